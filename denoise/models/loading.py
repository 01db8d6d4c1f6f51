"""`load_model`: a shipped model by name, a checkpoint file or an exported folder, as a `LearnedDenoiser`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from denoise.checkpoint import load_checkpoint
from denoise.hashing import file_hash, text_hash
from denoise.models.learned import LearnedDenoiser, isotropic_setup
from denoise.pretrained import PRETRAINED_DIR

__all__ = ["load_model", "resolve_checkpoint"]


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint file of a shipped model's name (``denoise models`` lists them), or the path itself."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        candidate = PRETRAINED_DIR / f"{name_or_path}.pt"
        if not candidate.exists():
            names = ", ".join(sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))) or "none"
            raise ValueError(f"no shipped model named {str(name_or_path)!r}; shipped: {names}")
        path = candidate
    return path


def load_model(name_or_path: str | Path, *, device: str = "auto", **kwargs: Any) -> LearnedDenoiser:
    """Load a shipped pretrained model by name (``denoise models`` lists them), a checkpoint file,
    or a folder written by ``denoise export`` (ONNX, run through onnxruntime: `denoise.exported`).

    A checkpoint whose ``inference`` settings name an ``isotropic_model`` (a shipped model, or a
    checkpoint path relative to its own folder) loads that 2D model too, with the same ``device``,
    ``sigma``, ``tta``, ``batch_size`` and ``noise_scale`` (`isotropic_setup`); the hash then
    covers both files."""
    path = resolve_checkpoint(name_or_path)
    if path.is_dir():
        from denoise.exported import is_export_dir, load_exported

        if not is_export_dir(path):
            raise ValueError(f"{path} is a folder but not an exported model (no denoise-export.json); give a shipped "
                             "model's name, a checkpoint file (.pt) or a folder written by `denoise export`")
        return load_exported(path, device=device, **kwargs)
    net, info, _ = load_checkpoint(path)
    name = info.get("name") or path.stem
    digest = file_hash(path)
    ref = info.get("inference", {}).get("isotropic_model")
    isotropic = None
    if ref and kwargs.get("planes") != 1:
        iso_path = path.parent / ref if (path.parent / ref).is_file() else resolve_checkpoint(ref)
        iso_net, iso_info, _ = load_checkpoint(iso_path)
        if int(iso_info["model"]["spatial_dims"]) != 2 or iso_info.get("normalization") != info.get("normalization"):
            raise ValueError(f"{path}: its isotropic_model {ref!r} must be a 2D model with the same normalisation")
        iso_info, shared = isotropic_setup(info, iso_info, kwargs)
        isotropic = LearnedDenoiser(iso_net, iso_info, name=iso_info.get("name") or iso_path.stem, device=device,
                                    checkpoint_hash=file_hash(iso_path), **shared)
        digest = text_hash(f"{digest}+{isotropic.checkpoint_hash}")
    return LearnedDenoiser(net, info, name=name, device=device, checkpoint_hash=digest, isotropic=isotropic, **kwargs)
