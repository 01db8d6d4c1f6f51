"""`LearnedDenoiser`: a trained network behind the `Denoiser` interface, with its checkpoint's facts.

It owns what is particular to networks: the normalisation stored in the checkpoint, the noise-level
input channel, 2.5D neighbouring slices, 3D sliding windows (MONAI ``sliding_window_inference``,
Gaussian blending, a retry at a smaller tile on out-of-memory), the flip self-ensemble
(`flip_ensemble`) and the choice of slicing axes (`LearnedDenoiser.plan`, three-plane inference on
near-isotropic volumes). `denoise.infer.denoise_array` runs any `Denoiser`, this one included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from denoise.models.base import Denoiser
from denoise.noise_level import NOISE_LEVELS, SPREAD_FOR_MAP, noise_spread, plane_levels, with_noise_channel
from denoise.normalize import Normalization

__all__ = ["LearnedDenoiser", "check_noise_scale", "flip_ensemble", "isotropic_setup", "option_suffix", "resolve_device", "ISOTROPIC_RATIO",
           "MAX_NOISE_SCALE", "MIN_PLANE_SIZE",
           "NOISE_LEVELS"]

log = logging.getLogger(__name__)
ISOTROPIC_RATIO = 1.5  # largest / smallest voxel edge of a volume that counts as near-isotropic
MIN_PLANE_SIZE = 16  # voxels along every axis for three-plane inference
MAX_NOISE_SCALE = 4.0  # the largest noise_scale taken (a network told 4x its estimate smooths away anatomy)


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
        noise_scale: the estimated noise level (constant or map) is multiplied by this in tissue
            before the network reads it (`denoise.noise_level.tissue_weight`: air keeps the full
            level); not a given ``sigma``. None = the checkpoint's ``inference.noise_scale`` (1 if
            it has none; mr-3d tells its isotropic mr-2d 0.8, which keeps small faint lesions: issue
            #31, docs/design.md "An operating point"). A value given here is recorded in the name
            (``+noisescaleF``).
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
                 planes: int | None = None, isotropic: LearnedDenoiser | None = None, sigma_map: bool = False,
                 noise_scale: float | None = None) -> None:
        if planes not in (None, 1, 3):
            raise ValueError(f"planes must be 1 or 3, got {planes!r}")
        scale = check_noise_scale(info.get("inference", {}).get("noise_scale", 1.0) if noise_scale is None else noise_scale)
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
        self.noise_scale = scale
        self.noise_scale_given = None if noise_scale is None else scale  # recorded in the name
        self.name = name + option_suffix(tta, planes, noise_scale=self.noise_scale_given)
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
        self.sigma_map = sigma_map and sigma is None
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

    def variant(self, *, sigma: float | None = None, tta: bool = False, planes: int | None = None,
                sigma_map: bool = False, noise_scale: float | None = None) -> LearnedDenoiser:
        """The same model (and isotropic model, which gets the same ``sigma``, ``tta`` and
        ``sigma_map``) with other inference options; the networks are shared, not copied. Each
        keeps its ``noise_scale`` unless one is given."""
        iso = None
        if self.isotropic is not None and planes != 1:
            iso = self.isotropic.variant(sigma=sigma, tta=tta, sigma_map=sigma_map, noise_scale=noise_scale)
        return LearnedDenoiser(self.net, self.info, name=self.base_name, device=str(self.device), tile=self.tile,
                               overlap=self.overlap, batch_size=self.batch_size, checkpoint_hash=self.checkpoint_hash,
                               sigma=sigma, tta=tta, planes=planes, isotropic=iso, sigma_map=sigma_map,
                               noise_scale=self.noise_scale_given if noise_scale is None else noise_scale)

    def with_noise_level(self, array: np.ndarray, mode: str = "auto") -> tuple[LearnedDenoiser, float | None]:
        """(this model told a noise-level map or a constant per slice, the scan's noise spread) for
        ``array`` (physical units, any of `denoise_array`'s shapes).

        ``mode``: ``"auto"`` a map where the scan's `denoise.noise_level.noise_spread` (max / min
        of the fitted map, median over a few slices) reaches `SPREAD_FOR_MAP`, else a constant;
        ``"map"`` / ``"constant"`` force one. Only 2D MR networks (percentile scaling) with a
        noise-level channel and no fixed ``sigma`` take a map; the others come back unchanged
        (spread None: not measured). CT noise varies across the image too (more at the body's
        centre), but the rule is measured on MR only."""
        if mode not in NOISE_LEVELS:
            raise ValueError(f"noise level must be one of {', '.join(NOISE_LEVELS)}, got {mode!r}")
        if (not self.noise_channel or self.sigma is not None or not self.noise_patch or self.spatial_dims != 2
                or self.trained_modality != "MR"):
            return self, None
        spread = noise_spread(array, int(self.noise_patch))
        use = mode == "map" or (mode == "auto" and spread >= SPREAD_FOR_MAP)
        if use == self.sigma_map:
            return self, spread
        return self.variant(sigma=self.sigma, tta=self.tta, planes=self.planes, sigma_map=use), spread

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

    def plane_levels(self, volume: np.ndarray) -> np.ndarray | None:
        """The noise levels this model would estimate on each slice of ``volume`` (normalised,
        z, y, x) along its shortest axis (the largest slices), as a volume, for every plane of
        three-plane inference (`denoise_batch` ``levels``); None when it reads no estimate (no
        noise-level channel, or a given sigma)."""
        if not self.noise_channel or self.sigma is not None:
            return None
        axis = int(np.argmin(volume.shape))  # the planes with the most pixels read the noise best
        levels = plane_levels(np.moveaxis(volume, axis, 0), self.noise_patch, spatial=self.sigma_map)
        return np.moveaxis(levels, 0, axis)

    @torch.no_grad()
    def denoise_batch(self, batch: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Denoise ``batch`` (n, [context,] *spatial); ``levels`` (n, *spatial): the noise levels
        to tell the network instead of its own per-sample estimates (`plane_levels`)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if not (self.spatial_dims == 2 and self.context):
            x = x[:, None]  # add the channel axis (context stacks already have it)
        if self.noise_channel:
            x = torch.from_numpy(with_noise_channel(x.numpy(), patch=self.noise_patch, sigma=self.sigma,
                                                        spatial=self.sigma_map, scale=self.noise_scale, levels=levels))
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


def check_noise_scale(value: float) -> float:
    """``value`` as a float in (0, `MAX_NOISE_SCALE`]; ValueError otherwise."""
    scale = float(value)
    if not 0.0 < scale <= MAX_NOISE_SCALE:
        raise ValueError(f"noise_scale must be above 0 and at most {MAX_NOISE_SCALE:g}, got {value!r}")
    return scale


def isotropic_setup(info: dict[str, Any], iso_info: dict[str, Any], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the isotropic model's checkpoint info, its inference options) inside a model whose ``info``
    names an ``isotropic_model``: it shares the caller's ``sigma``, ``tta``, ``batch_size`` and
    ``noise_scale``, and without a given ``noise_scale`` takes the outer checkpoint's
    ``inference.isotropic_noise_scale`` as its own default (mr-3d runs mr-2d along three planes at
    its own operating point). Used by `denoise.load_model` and by exported models alike."""
    shared = {k: kwargs[k] for k in ("sigma", "tta", "batch_size", "noise_scale") if k in kwargs}
    scale = info.get("inference", {}).get("isotropic_noise_scale")
    if scale is not None:
        iso_info = {**iso_info, "inference": {**iso_info.get("inference", {}), "noise_scale": float(scale)}}
    return iso_info, shared


def option_suffix(tta: bool = False, planes: int | None = None, strength: float = 1.0, noise_level: str = "auto",
                  noise_scale: float | None = None, calibrate: bool = True) -> str:
    """What a model's name gains for its inference options (manifests record it): ``+tta``, then
    ``+1plane`` or ``+3planes`` when ``planes`` is given, ``+noisescaleF`` when a ``noise_scale``
    is given, ``+strengthS`` below full strength, then ``+noisemap`` / ``+constantnoise`` when the
    noise level is forced (`NOISE_LEVELS`), ``+fullstrength`` when a 4D series' repeats may not
    lower the strength (``calibrate`` False: `denoise.repeat_strength`)."""
    return (("+tta" if tta else "") + {None: "", 1: "+1plane", 3: "+3planes"}[planes]
            + (f"+noisescale{noise_scale:g}" if noise_scale is not None else "")
            + (f"+strength{strength:g}" if strength != 1.0 else "")
            + {"auto": "", "map": "+noisemap", "constant": "+constantnoise"}[noise_level]
            + ("" if calibrate else "+fullstrength"))


def _triple(tile: int | tuple[int, ...]) -> tuple[int, int, int]:
    return (tile,) * 3 if isinstance(tile, int) else tuple(tile)  # type: ignore[return-value]
