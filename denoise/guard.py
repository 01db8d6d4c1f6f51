"""The no-added-structure guard: a learned model's output never shows more noise or more 2-pixel
pattern than its input, slice by slice (issue #31 item 1).

A denoiser removes noise; it must never add structure. On nearly noise-free series (a phantom, a
high-SNR slab) the shipped networks still changed the image by ~0.3-0.5% of its maximum and raised
the two no-reference measures of that must: the wavelet noise estimate (Donoho's MAD of the finest
diagonal band, `denoise.noise_level.wavelet_sigma`) by up to 2x and the 2-pixel periodic pattern
(`denoise.fidelity.periodic_pattern`) by 2-10% (docs/benchmarks.md, "No added structure"). Below
the lowest noise they were trained on (0.2% of the scale) the networks extrapolate, and what they
add there is their own fine-scale error.

`guard_slices` checks each 2D slice (the last two axes) of an output against its input and, where
either measure rose, blends that slice back towards the input (``input + s (output - input)``, the
largest ``s`` of `STRENGTHS` at which neither measure exceeds the input's; ``s = 0`` is the input
itself, so a slice always passes). On noisy scans both measures fall far below the input's and no
slice is touched. Compute only: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

from denoise.fidelity import periodic_pattern
from denoise.noise_level import wavelet_sigma

__all__ = ["guard_slices", "STRENGTHS", "MIN_EDGE"]

STRENGTHS = (0.8, 0.65, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0)  # tried in order when the full output fails
MIN_EDGE = 8  # slices smaller than this in-plane carry no finest wavelet band worth reading: left alone


def _measures(s: np.ndarray) -> tuple[float, float]:
    return wavelet_sigma(s), periodic_pattern(s)


def _passes(cand: np.ndarray, limits: tuple[float, float]) -> bool:
    noise, pattern = _measures(cand)
    return noise <= limits[0] * (1 + 1e-6) + 1e-12 and pattern <= limits[1] * (1 + 1e-6) + 1e-12


def guard_slices(noisy: np.ndarray, denoised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(guarded output, strength kept per slice) for an output ``denoised`` of input ``noisy`` (same
    shape, 2D or more; slices are the last two axes). A slice whose noise estimate and periodic
    pattern are both at most the input's is kept as it is (strength 1); otherwise it becomes the
    blend with the input at the largest passing `STRENGTHS` value. Neither array is modified."""
    inp = np.asarray(noisy)
    out = np.asarray(denoised)
    if inp.shape != out.shape:
        raise ValueError(f"input and output differ in shape: {inp.shape} vs {out.shape}")
    if inp.ndim < 2 or min(inp.shape[-2:]) < MIN_EDGE:
        return out, np.ones(int(np.prod(inp.shape[:-2])))  # one per slice (1 for a single image)
    flat_in = inp.reshape(-1, *inp.shape[-2:])
    flat_out = out.reshape(-1, *out.shape[-2:])
    kept = np.ones(len(flat_in))
    result = None
    for i, (x, y) in enumerate(zip(flat_in, flat_out)):
        x64 = x.astype(np.float64)
        limits = _measures(x64)
        change = y.astype(np.float64) - x64
        if _passes(x64 + change, limits):
            continue
        if result is None:
            result = flat_out.copy()
        s = next(s for s in STRENGTHS if s == 0.0 or _passes(x64 + s * change, limits))
        kept[i] = s
        result[i] = (x64 + s * change).astype(result.dtype)
    if result is None:
        return out, kept
    return result.reshape(out.shape), kept
