"""Inference: learned models behind the `Denoiser` interface, and `denoise_scan` for any denoiser.

2D denoisers run slice by slice along the scan's first spatial axis, in batches; 3D learned
models run through MONAI ``sliding_window_inference`` with Gaussian blending (no seams), with
tiles and batch sizes bounding memory and a retry at a smaller tile on out-of-memory.

Three-plane inference: on a near-isotropic volume (voxel edges within `ISOTROPIC_RATIO`, every
axis at least `MIN_PLANE_SIZE` voxels) a 2D model can also run along the other two axes, and the
three results are averaged (``planes=3``). A checkpoint may name a 2D ``isotropic_model`` in its
``inference`` settings: the shipped ``mr-3d`` is its slab network on thick-slice series and
``mr-2d`` along the three planes on near-isotropic volumes (docs/design.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from denoise.checkpoint import file_hash, load_checkpoint
from denoise.models.base import Denoiser
from denoise.normalize import Normalization, normalization_for
from denoise.pretrained import PRETRAINED_DIR
from denoise.scan import Scan

__all__ = ["LearnedDenoiser", "load_model", "resolve_checkpoint", "option_suffix", "denoise_scan", "denoise_array", "resolve_device",
           "PRETRAINED_DIR", "ISOTROPIC_RATIO", "MIN_PLANE_SIZE"]

log = logging.getLogger(__name__)
ISOTROPIC_RATIO = 1.5  # largest / smallest voxel edge of a volume that counts as near-isotropic
MIN_PLANE_SIZE = 16  # voxels along every axis for three-plane inference


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; other values are checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or mps, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    return torch.device(device)


class LearnedDenoiser(Denoiser):
    """A trained network plus its checkpoint info (normalisation, training noise, card facts).

    Args:
        net: the torch module (any of `denoise.models.MODELS`).
        info: the checkpoint config dict (``info["model"]`` at least).
        name: label, e.g. ``"mr-2d"`` or the checkpoint's file stem.
        device: "auto", "cpu", "cuda" or "mps".
        tile: 3D sliding-window ROI edge or (z, y, x) (voxels); default 96, and for slab models
            (which keep full in-plane resolution) 32 slices by up to 320 x 320, so that most
            slices are one window in-plane; batch_size: tiles or slices per forward pass
            (default: 2 on CPU, where bigger batches only spill the caches, 8 on a GPU).
        overlap: sliding-window overlap fraction.
        sigma: models with a noise-level channel: use this level (normalised scale, the
            estimator's convention, see `denoise.noise_level.noise_level`) instead of estimating it per
            slice/volume. Lower keeps more texture, higher smooths more (FFDNet's control).
        tta: geometric self-ensemble: average the outputs for the 4 in-plane flips of the input
            (`flip_ensemble`; 4x the compute, about 0.2 dB on held-out data, and no 2-pixel
            pattern); the name gains ``+tta`` (manifests record it).
        planes: 2D models on volumes: 1 = slices along the first axis only; 3 = on near-isotropic
            volumes (`ISOTROPIC_RATIO`, `MIN_PLANE_SIZE`; others fall back to 1) also along the
            other two axes, averaging the three (3x the compute; the name gains ``+3planes``).
            None = the checkpoint's choice: 1, or its ``isotropic_model`` along three planes.
            For a model with an ``isotropic_model``, 1 keeps its own network everywhere. A given
            value is recorded in the name (``+1plane`` / ``+3planes``).
        isotropic: the model to use on near-isotropic volumes instead of this one, along three
            planes (`load_model` sets it from the checkpoint's ``inference.isotropic_model``).
    """

    def __init__(self, net: torch.nn.Module, info: dict[str, Any], *, name: str = "model", device: str = "auto",
                 tile: int | tuple[int, ...] | None = None, overlap: float = 0.25, batch_size: int | None = None,
                 checkpoint_hash: str = "", sigma: float | None = None, tta: bool = False,
                 planes: int | None = None, isotropic: LearnedDenoiser | None = None) -> None:
        if planes not in (None, 1, 3):
            raise ValueError(f"planes must be 1 or 3, got {planes!r}")
        self.device = resolve_device(device)
        # 2D convolutions on CPU run ~13% faster in channels-last layout (oneDNN; measured on mr-2d)
        # (a network without parameters, an exported ONNX one, takes plain contiguous arrays)
        self.channels_last = (int(info["model"]["spatial_dims"]) == 2 and self.device.type == "cpu"
                              and any(True for _ in net.parameters()))
        self.net = net.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format).eval()
        self.info = info
        self.kind = info["model"]["kind"]
        self.spatial_dims = int(info["model"]["spatial_dims"])
        if planes == 3 and self.spatial_dims != 2:
            raise ValueError(f"{name}: three-plane inference is for 2D models; this one is 3D")
        self.planes = planes
        self.isotropic = isotropic
        self.base_name = name
        self.name = name + option_suffix(tta, planes)
        self.context = int(info["model"].get("context", 0))
        self.slab = bool(info["model"].get("slab", False))  # slice-preserving 3D: a lone slice is a 1-slice volume
        self.noise_channel = bool(info["model"].get("noise_channel", False))
        self.noise_patch = info.get("train", {}).get("patch_size")  # noise estimated as in training
        norm = info.get("normalization")
        self.normalization = Normalization(**norm) if norm else None
        self.tile = tile or ((32, 320, 320) if self.slab else 96)
        self.overlap = overlap
        self.batch_size = batch_size or (2 if self.device.type == "cpu" else 8)
        self.checkpoint_hash = checkpoint_hash
        self.sigma = sigma
        self.tta = tta
        self.progress = False

    @property
    def accepts_2d(self) -> bool:
        return self.spatial_dims == 2 or self.slab

    @property
    def trained_modality(self) -> str | None:
        """"CT" (window scaling in HU), "MR" (percentile scaling) or None (no scaling stored)."""
        if self.normalization is None:
            return None
        return "CT" if self.normalization.kind == "window" else "MR"

    def variant(self, *, sigma: float | None = None, tta: bool = False, planes: int | None = None) -> LearnedDenoiser:
        """The same model (and isotropic model, which gets the same ``sigma`` and ``tta``) with
        other inference options; the networks are shared, not copied."""
        iso = None
        if self.isotropic is not None and planes != 1:
            iso = self.isotropic.variant(sigma=sigma, tta=tta)
        return LearnedDenoiser(self.net, self.info, name=self.base_name, device=str(self.device), tile=self.tile,
                               overlap=self.overlap, batch_size=self.batch_size, checkpoint_hash=self.checkpoint_hash,
                               sigma=sigma, tta=tta, planes=planes, isotropic=iso)

    def plan(self, shape: tuple[int, ...], spacing: tuple[float, ...] | None) -> tuple[LearnedDenoiser, tuple[int, ...]]:
        """(the model to run, the axes to slice along) for a volume of ``shape`` (z, y, x) and
        voxel ``spacing`` (mm, same order; None = unknown: the first axis, never three planes).

        Near-isotropic volumes may take three planes (``planes``, ``isotropic``). Otherwise 2D and
        slab models slice along the first axis, or along another one that is the slice axis by its
        spacing: more than `ISOTROPIC_RATIO` times the other two, which are near-equal (a sagittal
        or coronal series stored with its slice axis elsewhere). The network then sees the planes
        that were acquired, with square pixels."""
        known = spacing is not None and len(shape) == 3 and len(spacing) == 3
        isotropic = known and min(shape) >= MIN_PLANE_SIZE and max(spacing) <= ISOTROPIC_RATIO * min(spacing)
        if self.planes == 3 and isotropic:
            return self, (0, 1, 2)
        if self.planes is None and self.isotropic is not None and isotropic:
            return self.isotropic, (0, 1, 2)
        axis = 0
        if known and (self.spatial_dims == 2 or self.slab):
            thick = int(np.argmax(spacing))
            plane = [spacing[i] for i in range(3) if i != thick]
            if thick != 0 and spacing[thick] > ISOTROPIC_RATIO * max(plane) and max(plane) <= ISOTROPIC_RATIO * min(plane):
                axis = thick
                log.info("slices of %s mm along axis %d (the thickest) rather than the first", spacing[thick], thick)
        return self, (axis,)

    @torch.no_grad()
    def denoise_batch(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if not (self.spatial_dims == 2 and self.context):
            x = x[:, None]  # add the channel axis (context stacks already have it)
        if self.noise_channel:
            from denoise.noise_level import with_noise_channel

            x = torch.from_numpy(with_noise_channel(x.numpy(), patch=self.noise_patch, sigma=self.sigma))
        return flip_ensemble(self._forward, x) if self.tta else self._forward(x)

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        """Network output for ``x`` (n, channels, *spatial) without the channel axis."""
        if self.spatial_dims == 2:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            outs = [self.net.predict(x[i : i + self.batch_size].to(self.device).contiguous(memory_format=fmt)).float().cpu()
                    for i in range(0, len(x), self.batch_size)]
            return torch.cat(outs)[:, 0].numpy()
        return np.stack([self._volume(v[None]) for v in x])

    def _volume(self, v: torch.Tensor) -> np.ndarray:
        from monai.inferers import sliding_window_inference

        tile = self.tile
        while True:
            roi = tuple(min(t, s) for t, s in zip(_triple(tile), v.shape[2:]))
            try:
                out = sliding_window_inference(
                    v, roi_size=roi, sw_batch_size=self.batch_size, predictor=self.net.predict,
                    overlap=self.overlap, mode="gaussian", sw_device=self.device, device=torch.device("cpu"),
                    progress=self.progress,
                )
                return out[0, 0].float().numpy()
            except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as exc:
                if "memory" not in str(exc).lower() or min(_triple(tile)) <= 16:
                    raise
                tile = tuple(max(16, t // 2) for t in _triple(tile))
                log.warning("out of memory; retrying with tile %s", tile)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()


def flip_ensemble(forward: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor) -> np.ndarray:
    """The mean of ``forward`` over the four in-plane flips of ``x`` (n, channels, *spatial), each
    flip undone on its output (n, *spatial). The in-plane axes are first replicate-padded to even
    lengths (and cropped back), so that each flip moves every pixel to the other sub-pixel phase
    along the flipped axis: a pixel-unshuffle network then sees the image in all four phases, and
    the mean cancels the faint 2-pixel pattern their disagreement leaves. (On an odd length a flip
    keeps each pixel's phase, and an ensemble of flips and rotations left the pattern in place.)"""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2) + (0, 0) * (x.dim() - 4), mode="replicate")
    total = forward(x)
    for dims in ((-1,), (-2,), (-2, -1)):
        total += np.flip(forward(x.flip(dims)), dims)
    return np.ascontiguousarray(total[..., :h, :w] / 4)


def option_suffix(tta: bool = False, planes: int | None = None, strength: float = 1.0) -> str:
    """What a model's name gains for its inference options (manifests record it): ``+tta``, then
    ``+1plane`` or ``+3planes`` when ``planes`` is given, then ``+strengthS`` below full strength."""
    return (("+tta" if tta else "") + {None: "", 1: "+1plane", 3: "+3planes"}[planes]
            + (f"+strength{strength:g}" if strength != 1.0 else ""))


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1], rounded to 4 decimals; ValueError otherwise."""
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must be between 0 (the input unchanged) and 1 (full denoising), got {strength!r}")
    return round(s, 4) + 0.0  # 4 decimals (what the manifest records and --continue compares); -0 -> 0


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
    ``sigma``, ``tta`` and ``batch_size``; the hash then covers both files."""
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
        shared = {k: kwargs[k] for k in ("sigma", "tta", "batch_size") if k in kwargs}
        isotropic = LearnedDenoiser(iso_net, iso_info, name=iso_info.get("name") or iso_path.stem, device=device,
                                    checkpoint_hash=file_hash(iso_path), **shared)
        digest = hashlib.sha256(f"{digest}+{isotropic.checkpoint_hash}".encode()).hexdigest()[:12]
    return LearnedDenoiser(net, info, name=name, device=device, checkpoint_hash=digest, isotropic=isotropic, **kwargs)


def denoise_array(array: np.ndarray, denoiser: Denoiser, *, modality: str = "MR", batch_size: int = 16,
                  progress: bool = False, spacing: tuple[float, ...] | None = None, strength: float = 1.0) -> np.ndarray:
    """Denoise an array in physical units ``(y, x)``, ``(z, y, x)`` or ``(t, z, y, x)``.

    The array is scaled with the denoiser's normalisation (or the modality default), denoised
    (2D: slices in batches; 3D: whole volumes), and scaled back. The input is not modified.
    With a bounded `Normalization.model_range` (CT windows) the denoiser sees the clipped input, and
    values outside the range (out-of-field padding, metal) come back exactly as they were.
    ``spacing`` (voxel size in mm, array order) lets learned models pick three-plane inference on
    near-isotropic volumes (`LearnedDenoiser.plan`); without it they slice along the first axis.
    ``progress`` shows a bar over slices (2D) or sliding-window tiles (3D learned models).
    ``strength`` in [0, 1] blends the result with the input: ``input + strength * (denoised - input)``
    (0 = the input unchanged, 1 = the full denoising): less of the noise removed, more of faint
    structure and texture kept, for any method.
    MR magnitude and other non-negative inputs stay non-negative: when the input has no negative
    value the output is clipped at 0 (a zeroed background is not pushed below zero); inputs with
    negative values (CT in HU, phase, difference images) are returned unclipped.
    Raises ValueError on NaN/inf values (the NIfTI reader refuses such files too).
    """
    array = np.asarray(array, dtype=np.float32)
    strength = check_strength(strength)
    finite = np.isfinite(array)
    if not finite.all():  # one NaN would spread through every convolution window it touches
        raise ValueError(f"the image holds {array.size - np.count_nonzero(finite)} NaN/inf values; denoising would "
                         "spread them into their neighbours (replace them first, e.g. with np.nan_to_num)")
    if array.ndim == 2 and not denoiser.accepts_2d:
        raise ValueError(f"{denoiser.name} is a 3D model and needs a volume; this scan is a single 2D slice "
                         "(use a 2D model)")
    axes: tuple[int, ...] = (0,)
    if isinstance(denoiser, LearnedDenoiser) and array.ndim >= 3:
        denoiser, axes = denoiser.plan(array.shape[-3:], tuple(spacing[-3:]) if spacing is not None else None)
    norm = denoiser.normalization or normalization_for(modality)
    # memory: the input, the model's input and the output, plus a mask of the clipped voxels (the
    # unclipped normalised copy of `Normalization.to_model` is not kept: clipped voxels come back
    # from the input itself)
    offset, scale = norm.params(array)
    x = (array - np.float32(offset)) / np.float32(scale)
    bounds = norm.model_range()
    clipped = None
    if bounds is not None:
        clipped = (x < bounds[0]) | (x > bounds[1])
        np.clip(x, *bounds, out=x)
    vols = x.reshape(-1, *x.shape[-3:]) if x.ndim >= 3 else x[None, None]
    out = np.empty_like(vols)
    if isinstance(denoiser, LearnedDenoiser):
        denoiser.progress = progress and denoiser.spatial_dims == 3
    bar = tqdm(total=vols.shape[0] * sum(vols.shape[1 + a] for a in axes), desc="slices", unit="slice", leave=False,
               disable=not progress or denoiser.spatial_dims == 3)
    for t, vol in enumerate(vols):
        if denoiser.spatial_dims == 3:  # slab models take the slice axis first
            a = axes[0]
            out[t] = np.moveaxis(denoiser.denoise_batch(np.moveaxis(vol, a, 0)[None])[0], 0, a)
            continue
        out[t] = 0.0
        for a in axes:  # one view at a time, summed in place (memory: one extra volume)
            out[t] += np.moveaxis(_slices(np.moveaxis(vol, a, 0), denoiser, batch_size, bar), 0, a)
        if len(axes) > 1:
            out[t] /= len(axes)
    bar.close()
    del x, vols
    result = out.reshape(array.shape)
    result *= np.float32(scale)
    result += np.float32(offset)
    if clipped is not None and clipped.any():  # the model saw a limited range: values outside it pass through as they were
        np.copyto(result, array, where=clipped)
    if strength != 1.0:
        result = (array + np.float32(strength) * (result - array)).astype(np.float32)
    if array.size and array.min() >= 0:  # magnitude data: no negative intensities to restore
        np.maximum(result, 0, out=result)
    return result


def _slices(vol: np.ndarray, denoiser: Denoiser, batch_size: int, bar: tqdm) -> np.ndarray:
    """A 2D denoiser over the slices of ``vol`` (first axis) in batches; 2.5D models get each
    slice with its neighbours (edge slices repeated)."""
    out = np.empty_like(vol)
    k = denoiser.context
    for i in range(0, len(vol), batch_size):
        idx = np.arange(i, min(i + batch_size, len(vol)))
        chunk = vol[np.clip(idx[:, None] + np.arange(-k, k + 1)[None], 0, len(vol) - 1)] if k else vol[idx]
        out[idx] = denoiser.denoise_batch(chunk)
        bar.update(len(idx))
    return out


def denoise_scan(scan: Scan, denoiser: Denoiser, *, batch_size: int = 16, progress: bool = False,
                 strength: float = 1.0) -> Scan:
    """Denoise a Scan; returns a new Scan in the same physical units and geometry.

    ``meta`` gains ``"denoiser"`` (name) and ``"seconds"`` (compute time). 2D models go slice by
    slice along the first spatial axis (and along all three on near-isotropic volumes when asked:
    `LearnedDenoiser.plan`); 3D models use Gaussian-blended sliding windows.
    """
    t0 = time.perf_counter()
    result = denoise_array(scan.array, denoiser, modality=scan.modality, batch_size=batch_size, progress=progress,
                           spacing=scan.spacing, strength=strength)
    return scan.with_array(result, denoiser=denoiser.name, seconds=time.perf_counter() - t0)


def _triple(tile: int | tuple[int, ...]) -> tuple[int, int, int]:
    return (tile,) * 3 if isinstance(tile, int) else tuple(tile)  # type: ignore[return-value]
