"""`denoise train`: train or fine-tune a model on a folder of clean scans (discovery, the modality's
scaling and default noise, configs from YAML or the --init checkpoint, then `denoise.train.fit`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from denoise.io import ScanReadError, discover_scans

__all__ = ["train_folder", "DEFAULT_NOISE"]

log = logging.getLogger(__name__)

# `train_folder`'s noise when neither the call, the config nor an init checkpoint sets one: blind
# over the range the shipped models cover (ct-2d's model card: 10-50% dose)
DEFAULT_NOISE = {"MR": "rician:0.01-0.09", "CT": "lowdose:0.1-0.5"}


def train_folder(data: str | Path, out: str | Path, *, kind: str | None = None, dims: int | None = None,
                 noise: str | None = None, config: str | Path | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, modality: str | None = None, lr: float | None = None,
                 init: str | Path | None = None, resume: str | Path | None = None, device: str = "auto",
                 progress: bool = True) -> Path:
    """Train on every scan under ``data`` (via `discover_scans`); return the best checkpoint path.

    Defaults: the config's model (a 2D ``dae`` without one) on `DEFAULT_NOISE` for the scans' modality
    (MR: Rician 1-9% of the robust maximum; CT: sinogram low-dose noise at 10-50% of the scan's dose).
    A folder holding CT and MR scans needs ``modality`` ("CT" or "MR"; the others are left out).
    With ``init`` (a shipped model's name or a
    checkpoint) the run fine-tunes it on these scans: architecture, intensity scaling, patch size
    and noise come from the checkpoint unless given here or in ``config`` (a larger DAE in the
    config is grown from it, `denoise.models.grow`), and the learning rate defaults to 1e-4.
    """
    import dataclasses

    from denoise.config import ModelConfig, TrainConfig, load_config
    from denoise.normalize import Normalization, normalization_for
    from denoise.train import fit

    model_cfg, train_cfg = load_config(config) if config else (ModelConfig(), TrainConfig())
    yaml_model, yaml_train = _yaml_section(config, "model"), _yaml_section(config, "train")
    start: dict[str, Any] = {}
    if init is not None:
        from denoise.checkpoint import load_checkpoint
        from denoise.models.loading import resolve_checkpoint

        init = resolve_checkpoint(init)
        start_net, start, _ = load_checkpoint(init)
        # the checkpoint's architecture, with what the config's model section changes (growing it)
        model_cfg = dataclasses.replace(start_net.config, **yaml_model)
        kind, dims = kind or model_cfg.kind, dims or model_cfg.spatial_dims
        if (kind, dims) != (model_cfg.kind, model_cfg.spatial_dims):
            hint = (" (a config whose model section sets spatial_dims: 3 and slab: true grows a 2.5D DAE into a slab 3D one)"
                    if (kind, dims, model_cfg.spatial_dims) == ("dae", 3, 2) else "")
            raise ValueError(f"{init}: a {model_cfg.spatial_dims}D {model_cfg.kind} model; cannot fine-tune it as a {dims}D {kind}{hint}")
        inherited = {"normalization": Normalization(**start["normalization"]), "patch_size": start["train"]["patch_size"],
                     "lr": 1e-4, "noise": start["noise"]}
        train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in inherited.items() if k not in yaml_train})
    sources, _ = discover_scans(data)
    loaded = []
    for s in sources:
        try:
            loaded.append((s, s.load()))
        except ScanReadError as exc:
            tqdm.write(f"skipped for training: {exc}")
    if not loaded:
        raise ValueError(f"{data}: no readable scans to train on")
    # one model learns one intensity scale and one noise physics: CT (HU window, low-dose noise) or
    # the rest (MR and unlabelled scans: percentile scaling, Rician noise)
    is_ct = [scan.modality.upper() == "CT" for _, scan in loaded]
    if modality is None and 0 < sum(is_ct) < len(loaded):
        raise ValueError(f"{data}: {sum(is_ct)} CT and {len(loaded) - sum(is_ct)} MR/other scans; a model learns one "
                         "modality's intensity scale and noise: choose one with --modality CT or --modality MR "
                         "(the other scans are then left out)")
    mod = (modality or ("CT" if is_ct[0] else "MR")).upper()
    kept = []
    for (src, scan), ct in zip(loaded, is_ct):
        if ct == (mod == "CT"):
            kept.append((src, scan))
        else:
            tqdm.write(f"left out of training: {src.relpath} (not {mod})")
    if not kept:
        raise ValueError(f"{data}: no {mod} scans to train on")
    sources, scans = [src for src, _ in kept], [scan for _, scan in kept]
    model_cfg = dataclasses.replace(model_cfg, kind=kind or model_cfg.kind, spatial_dims=dims or model_cfg.spatial_dims)
    updates: dict[str, Any] = {"device": device}
    if noise:  # otherwise the config's, the init checkpoint's, or the modality's default
        updates["noise"] = noise
    elif not init and "noise" not in yaml_train:
        updates["noise"] = DEFAULT_NOISE[mod]
    if lr:
        updates["lr"] = lr
    if not init and "normalization" not in yaml_train:
        updates["normalization"] = normalization_for(mod)
    if init and "normalization" not in yaml_train and train_cfg.normalization.kind != normalization_for(mod).kind:
        raise ValueError(f"{init}: trained with {train_cfg.normalization.kind} intensity scaling, which does not suit "
                         f"these {mod} scans; fine-tune a model of the same modality")
    if epochs:
        updates["epochs"] = epochs
    if steps_per_epoch:
        updates["steps_per_epoch"] = steps_per_epoch
    train_cfg = dataclasses.replace(train_cfg, **updates)
    fit(model_cfg, train_cfg, scans, out, name=Path(out).name, resume=resume, init=init, progress=progress,
        data_summary={"files": [s.relpath for s in sources], **({"fine_tuned_from": start.get("name")} if init else {})})
    return Path(out) / "best.pt"


def _yaml_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """A config YAML's ``section`` (``model`` or ``train``) as written; empty without a file."""
    import yaml

    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    return dict(data.get(section) or {})
