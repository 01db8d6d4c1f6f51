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

from collections.abc import Iterator
from typing import Any

import numpy as np

from denoise.models.base import Denoiser

__all__ = ["FLIPS", "flip_outputs", "flip_spread"]

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # in-plane flips (columns, rows, both)


def flip_outputs(array: np.ndarray, denoiser: Denoiser, *, first: np.ndarray | None = None,
                 **kwargs: Any) -> Iterator[np.ndarray]:
    """The denoiser's output for each of the four in-plane flips of ``array`` (``(y, x)``,
    ``(z, y, x)`` or ``(t, z, y, x)``, physical units), each flipped back, one at a time. A learned
    model with ``tta`` runs without it here (its own flip average would make the members equal).

    Odd in-plane sizes are first edge-padded to even (and cropped back), as `flip_ensemble` does:
    on an odd length a flip keeps every pixel's pixel-unshuffle phase, and the spread would miss
    the phases' disagreement. ``first``: the unflipped output when already computed (used when no
    padding is needed: it saves one pass; it must be the network's own output, `denoise.infer.own_output`). ``kwargs``
    go to `denoise.infer.denoise_array`; the members are the network's outputs, without the
    no-added-structure guard (`denoise.guard`) and without a strength chosen by a series' repeats,
    unless ``guard=True`` / ``calibrate=True`` is passed: the map measures how the network's flips
    disagree, and a blend of whole slices or series back towards the input would hide that."""
    from denoise.infer import LearnedDenoiser, denoise_array

    kwargs.setdefault("guard", False)
    kwargs.setdefault("calibrate", False)  # each member the network's own: a series-chosen strength would scale the spread
    model = denoiser.variant(sigma=denoiser.sigma, planes=denoiser.planes, sigma_map=denoiser.sigma_map) if (
        isinstance(denoiser, LearnedDenoiser) and denoiser.tta) else denoiser
    h, w = array.shape[-2:]
    pad = [(0, 0)] * (array.ndim - 2) + [(0, h % 2), (0, w % 2)]
    padded = np.pad(array, pad, mode="edge") if (h % 2 or w % 2) else array
    for axes in FLIPS:
        if not axes and first is not None and model is denoiser and padded is array:
            yield np.asarray(first, dtype=np.float32)
            continue
        flipped = np.ascontiguousarray(np.flip(padded, axes)) if axes else padded
        out = denoise_array(flipped, model, **kwargs)
        out = np.flip(out, axes) if axes else out
        yield np.ascontiguousarray(out[..., :h, :w])


def flip_spread(array: np.ndarray, denoiser: Denoiser, *, first: np.ndarray | None = None,
                **kwargs: Any) -> np.ndarray:
    """The per-voxel standard deviation (ddof=1) of `flip_outputs`, float32, the shape of ``array``;
    accumulated one member at a time (Welford), so memory is three volumes beyond the run's."""
    mean = m2 = None
    for k, out in enumerate(flip_outputs(array, denoiser, first=first, **kwargs), start=1):
        out = out.astype(np.float32)
        if mean is None:
            mean, m2 = out.copy(), np.zeros_like(out)
            continue
        delta = out - mean
        mean += delta / k
        m2 += delta * (out - mean)
    return np.sqrt(m2 / (len(FLIPS) - 1)).astype(np.float32)
