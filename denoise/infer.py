"""Inference: `denoise_array` / `denoise_scan` run any `Denoiser` on an array or Scan in physical units.

They scale the input with the denoiser's normalisation (or the modality default), take 2D
denoisers slice by slice along the axes the denoiser's `plan` chooses (in batches, with neighbouring
slices for 2.5D models), hand volumes to 3D denoisers, and scale back. What is particular to
networks (sliding windows, the noise-level channel, flip ensembles, three-plane inference on
near-isotropic volumes) lives with them in `denoise.models.learned`; loading by name or path in
`denoise.models.loading` (both re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from denoise.models.base import Denoiser
from denoise.models.learned import (
    ISOTROPIC_RATIO,
    MIN_PLANE_SIZE,
    NOISE_LEVELS,
    LearnedDenoiser,
    flip_ensemble,
    option_suffix,
    resolve_device,
)
from denoise.models.loading import load_model, resolve_checkpoint
from denoise.normalize import normalization_for
from denoise.pretrained import PRETRAINED_DIR
from denoise.scan import Scan

# the model-side names stay importable from here (research scripts import them from denoise.infer)
__all__ = ["denoise_scan", "denoise_array", "check_strength", "LearnedDenoiser", "load_model", "resolve_checkpoint",
           "option_suffix", "resolve_device", "NOISE_LEVELS", "flip_ensemble", "PRETRAINED_DIR", "ISOTROPIC_RATIO", "MIN_PLANE_SIZE"]


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, 1], rounded to 4 decimals; ValueError otherwise."""
    s = float(strength)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"strength must be between 0 (the input unchanged) and 1 (full denoising), got {strength!r}")
    return round(s, 4) + 0.0  # 4 decimals (what the manifest records and --continue compares); -0 -> 0


def denoise_array(array: np.ndarray, denoiser: Denoiser, *, modality: str = "MR", batch_size: int = 16,
                  progress: bool | Callable[[int, int], None] = False, spacing: tuple[float, ...] | None = None,
                  strength: float = 1.0, noise_level: str = "auto", details: dict | None = None,
                  guard: bool = True, calibrate: bool = True) -> np.ndarray:
    """Denoise an array in physical units ``(y, x)``, ``(z, y, x)`` or ``(t, z, y, x)``.

    The array is scaled with the denoiser's normalisation (or the modality default), denoised
    (2D: slices in batches; 3D: whole volumes), and scaled back. The input is not modified.
    With a bounded `Normalization.model_range` (CT windows) the denoiser sees the clipped input, and
    values outside the range (out-of-field padding, metal) come back exactly as they were.
    ``spacing`` (voxel size in mm, array order) lets learned models pick three-plane inference on
    near-isotropic volumes (`LearnedDenoiser.plan`); without it they slice along the first axis.
    ``progress`` shows a bar over slices (2D) or sliding-window tiles (3D learned models); a
    callable instead is called with (slices done, slices in all) after each batch of slices (2D) or
    each volume (3D), for a GUI's own bar (the viewer's, with an ETA).
    ``strength`` in [0, 1] blends the result with the input: ``input + strength * (denoised - input)``
    (0 = the input unchanged, 1 = the full denoising): less of the noise removed, more of faint
    structure and texture kept, for any method.
    ``noise_level`` (``"auto"``, ``"map"``, ``"constant"``): what a learned model's noise-level
    channel is told, a map of the noise level over each slice or one value per slice
    (`LearnedDenoiser.with_noise_level`: auto takes the map where the scan's noise visibly varies
    across the image). A given ``details`` dict receives ``noise_spread`` (None where not
    measured) and ``noise_level`` (``"map"``, ``"constant"``, or ``""`` for a model without the
    channel or with a fixed sigma).
    MR magnitude and other non-negative inputs stay non-negative: when the input has no negative
    value the output is clipped at 0 (a zeroed background is not pushed below zero); inputs with
    negative values (CT in HU, phase, difference images) are returned unclipped.
    ``guard`` (learned models only): no slice of the output may show a higher noise estimate or more
    2-pixel pattern than the input's; a slice that does is blended back towards the input
    (`denoise.guard.guard_slices`; nearly noise-free scans, never the noisy ones in the
    measurements). ``details`` also receives ``guarded_slices`` (how many were blended back).
    ``calibrate`` (a 4D series ``(t, z, y, x)``, any method): the series' own still repeats choose the
    strength, lowering it where the blend with the input comes closer to the other repeats' mean
    (`denoise.repeat_strength`; real EPI: the shipped models' -1.3 to -1.4 dB became +0.1 to +0.2);
    ``details`` receives ``repeat_strength`` (the factor applied on top of ``strength``; None where
    not calibrated).
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
    learned = isinstance(denoiser, LearnedDenoiser)
    if array.ndim >= 3:
        denoiser, axes = denoiser.plan(array.shape[-3:], tuple(spacing[-3:]) if spacing is not None else None)
    spread = None
    if isinstance(denoiser, LearnedDenoiser):
        denoiser, spread = denoiser.with_noise_level(array, noise_level)
    if details is not None:
        details.update(noise_spread=spread, noise_level="" if spread is None else "map" if denoiser.sigma_map else "constant")
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
    report = progress if callable(progress) else None
    show = bool(progress) and report is None
    denoiser.progress = show and denoiser.spatial_dims == 3  # 3D: a bar over sliding-window tiles
    bar = tqdm(total=vols.shape[0] * sum(vols.shape[1 + a] for a in axes), desc="slices", unit="slice", leave=False,
               disable=not show or denoiser.spatial_dims == 3)
    steps = _Steps(bar, report)
    for t, vol in enumerate(vols):
        if denoiser.spatial_dims == 3:  # slab models take the slice axis first
            a = axes[0]
            out[t] = np.moveaxis(denoiser.denoise_batch(np.moveaxis(vol, a, 0)[None])[0], 0, a)
            steps.update(vol.shape[a])  # the bar is off for 3D (its tiles have their own); a callback counts slices
            continue
        out[t] = 0.0
        # three planes: every plane is told the noise level the slices along the shortest axis read (a
        # sagittal plane of a thin slab is too small to estimate its own; `LearnedDenoiser.plane_levels`)
        levels = denoiser.plane_levels(vol) if len(axes) > 1 and isinstance(denoiser, LearnedDenoiser) else None
        for a in axes:  # one view at a time, summed in place (memory: one extra volume, two with levels)
            lv = None if levels is None else np.moveaxis(levels, a, 0)
            out[t] += np.moveaxis(_slices(np.moveaxis(vol, a, 0), denoiser, batch_size, steps, lv), 0, a)
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
        result = _blend(array, result, strength)
    if array.size and array.min() >= 0:  # magnitude data: no negative intensities to restore
        np.maximum(result, 0, out=result)
    if guard and learned:
        from denoise.guard import guard_slices

        result, kept = guard_slices(array, result)
        if details is not None:
            details["guarded_slices"] = int(np.sum(kept < 1))
    if calibrate and array.ndim == 4:
        from denoise.repeat_strength import repeat_strength

        factor = repeat_strength(array, result)
        if factor is not None and factor < 1.0:
            result = _blend(array, result, factor)
        if details is not None:
            details["repeat_strength"] = factor
    return result


def _blend(array: np.ndarray, result: np.ndarray, s: float) -> np.ndarray:
    """``array + s (result - array)`` in float32: ``s`` of the denoiser's change kept."""
    return (array + np.float32(s) * (result - array)).astype(np.float32)


def own_output(details: dict) -> bool:
    """True when `denoise_array`'s result (its ``details``) is the denoiser's own output at the
    asked strength: no slice blended back by the guard, no strength lowered by the repeats
    (`denoise.uncertainty.flip_outputs` may then reuse it as its unflipped member)."""
    return not details.get("guarded_slices") and details.get("repeat_strength") in (None, 1.0)


class _Steps:
    """Slices done: the terminal bar and a caller's callback (tqdm counts nothing while disabled)."""

    def __init__(self, bar: tqdm, report: Callable[[int, int], None] | None) -> None:
        self.bar, self.report, self.done = bar, report, 0

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        if self.report is not None:
            self.report(self.done, int(self.bar.total))


def _slices(vol: np.ndarray, denoiser: Denoiser, batch_size: int, steps: _Steps,
            levels: np.ndarray | None = None) -> np.ndarray:
    """A 2D denoiser over the slices of ``vol`` (first axis) in batches; 2.5D models get each
    slice with its neighbours (edge slices repeated). ``levels`` (like ``vol``): the noise levels
    a learned model is told (`LearnedDenoiser.plane_levels`) instead of its own estimates."""
    out = np.empty_like(vol)
    k = denoiser.context
    for i in range(0, len(vol), batch_size):
        idx = np.arange(i, min(i + batch_size, len(vol)))
        chunk = vol[np.clip(idx[:, None] + np.arange(-k, k + 1)[None], 0, len(vol) - 1)] if k else vol[idx]
        out[idx] = denoiser.denoise_batch(chunk) if levels is None else denoiser.denoise_batch(chunk, levels=levels[idx])
        steps.update(len(idx))
    return out


def denoise_scan(scan: Scan, denoiser: Denoiser, *, batch_size: int = 16, progress: bool | Callable[[int, int], None] = False,
                 strength: float = 1.0, noise_level: str = "auto", guard: bool = True, calibrate: bool = True) -> Scan:
    """Denoise a Scan; returns a new Scan in the same physical units and geometry.

    ``meta`` gains ``"denoiser"`` (name), ``"seconds"`` (compute time), and the ``details`` of
    `denoise_array` (``"noise_spread"``, ``"noise_level"``, ``"guarded_slices"``, ``"repeat_strength"``). 2D models go slice by
    slice along the first spatial axis (and along all three on near-isotropic volumes when asked:
    `LearnedDenoiser.plan`); 3D models use Gaussian-blended sliding windows.
    """
    t0 = time.perf_counter()
    details: dict = {}
    result = denoise_array(scan.array, denoiser, modality=scan.modality, batch_size=batch_size, progress=progress,
                           spacing=scan.spacing, strength=strength, noise_level=noise_level, details=details,
                           guard=guard, calibrate=calibrate)
    return scan.with_array(result, denoiser=denoiser.name, seconds=time.perf_counter() - t0, **details)
