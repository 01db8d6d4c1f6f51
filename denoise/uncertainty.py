"""Per-voxel uncertainty of a learned denoiser without retraining: the spread of its outputs over
the four in-plane flips of the input.

A convolutional network is not flip-equivariant: where it is sure of the answer (flat tissue,
strong edges it has seen often) the four flipped inputs give nearly the same output; where it is
guessing (fine texture at the noise level, small structures, the pixel-unshuffle phase pattern,
out-of-distribution intensities) they disagree. The map is the standard deviation (ddof=1) of the
four outputs, each flipped back, in the scan's own units (HU for CT). It is a spread, not an error
bar: docs/benchmarks.md ("Uncertainty maps") measures how it tracks the actual absolute error on
held-out synthetic noise (correlation, and observed error by predicted bin) and the factor from
spread to typical error. Compute only; `denoise run --uncertainty` writes it beside each output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from denoise.models.base import Denoiser

__all__ = ["FLIPS", "flip_outputs", "flip_spread"]

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # in-plane flips (columns, rows, both)


def flip_outputs(array: np.ndarray, denoiser: Denoiser, *, first: np.ndarray | None = None,
                 **kwargs: Any) -> list[np.ndarray]:
    """The denoiser's output for each of the four in-plane flips of ``array`` (``(y, x)``,
    ``(z, y, x)`` or ``(t, z, y, x)``, physical units), each flipped back. A learned model with
    ``tta`` runs without it here (its own flip average would make the members equal).
    ``first``: the unflipped output when already computed (saves one pass). ``kwargs`` go to
    `denoise.infer.denoise_array` (modality, spacing, strength, batch_size, progress)."""
    from denoise.infer import LearnedDenoiser, denoise_array

    model = denoiser.variant(sigma=denoiser.sigma, planes=denoiser.planes) if (
        isinstance(denoiser, LearnedDenoiser) and denoiser.tta) else denoiser
    outs = []
    for axes in FLIPS:
        if not axes and first is not None and model is denoiser:
            outs.append(np.asarray(first, dtype=np.float32))
            continue
        flipped = np.flip(array, axes) if axes else array
        out = denoise_array(np.ascontiguousarray(flipped), model, **kwargs)
        outs.append(np.ascontiguousarray(np.flip(out, axes)) if axes else out)
    return outs


def flip_spread(array: np.ndarray, denoiser: Denoiser, *, first: np.ndarray | None = None,
                **kwargs: Any) -> np.ndarray:
    """The per-voxel standard deviation (ddof=1) of `flip_outputs`, float32, the shape of ``array``."""
    outs = flip_outputs(array, denoiser, first=first, **kwargs)
    mean = np.mean(outs, axis=0)
    var = sum((o - mean) ** 2 for o in outs) / (len(outs) - 1)
    return np.sqrt(var).astype(np.float32)
