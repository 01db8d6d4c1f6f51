"""A series' own repeats choose how much of a denoiser's change to keep (the strength).

A 4D series whose time points image the same anatomy (fMRI volumes, averages or b=0 volumes saved
separately) carries its own reference: the other repeats. For repeat k with input x_k and output
f_k, the blend d_k(S) = x_k + S (f_k - x_k) is compared with the mean r_k of the other still
repeats. The noise of r_k is independent of x_k's and so of f_k, so

    E |d_k(S) - r_k|^2 = E |d_k(S) - truth|^2 + (terms that do not depend on S),

and the S that minimises the summed squared difference over the repeats' foreground also
minimises the expected error against the unknown noise-free image (the argument of
`denoise.realnoise`'s unbiased PSNR, used here to choose rather than to score). The sum is
quadratic in S, so the minimiser is closed-form: S* = -sum <x_k - r_k, f_k - x_k> / sum |f_k - x_k|^2,
kept in [0, 1]: the series can lower the strength, never raise it above the denoiser's full change.

Measured on the three real EPI series in ../shared/data (docs/benchmarks.md, "Real noise"): the
shipped models, told by their own estimate, remove anatomy the repeats show is there (mr-2d -1.25 /
-1.42 dB on the Siemens BOLD / nibabel EPI); the calibrated blend lands at the best strength of a
grid (S* 0.21-0.31 there, 0 or 1 on the GE EPI where the full output was worse / better).

Where the time points are not repeats (diffusion directions, cardiac phases), the difference
between a volume and the others' mean is signal, not noise: a denoiser that removes that volume's
own structure then looks better against the others' mean, which pushes S* up, towards the
uncalibrated output; `consistent_repeats` leaves out time points that moved. Memory: up to
`MAX_REPEATS` evenly spaced time points and `MAX_VOXELS` voxels of them are read, only their
foreground kept in float64. Compute only.
"""

from __future__ import annotations

import numpy as np

from denoise.metrics import foreground_mask
from denoise.realnoise import consistent_repeats

__all__ = ["repeat_strength", "MAX_REPEATS"]

MAX_REPEATS = 16  # time points read (evenly spaced): one scalar needs few, a long fMRI run has hundreds
MAX_VOXELS = 2**26  # and at most this many voxels of them (>= 2 time points): 4 of a 256^3 series, 16 of an fMRI run


def repeat_strength(series: np.ndarray, denoised: np.ndarray) -> float | None:
    """The strength in [0, 1] that the still repeats of ``series`` ``(t, z, y, x)`` (or ``(t, y,
    x)``) measure as best for ``denoised`` (same shape): the blend ``series + S (denoised -
    series)`` closest, over the foreground of the repeats' mean, to the mean of the other still
    repeats (module docstring). None when there is nothing to calibrate: fewer than 2 time points,
    or a denoised series identical to its input."""
    x = np.asarray(series)
    f = np.asarray(denoised)
    if x.shape != f.shape:
        raise ValueError(f"series and denoised series differ in shape: {x.shape} vs {f.shape}")
    if x.ndim < 3 or x.shape[0] < 2:
        return None
    n = min(MAX_REPEATS, x.shape[0], max(2, MAX_VOXELS // max(1, int(np.prod(x.shape[1:])))))
    picks = np.unique(np.linspace(0, x.shape[0] - 1, n).round().astype(int))
    xs = x[picks].astype(np.float32)
    mask = foreground_mask(xs.mean(axis=0, dtype=np.float64))
    xs = xs[:, mask]  # (time points, foreground voxels): all that is read from here on
    keep = consistent_repeats(xs)
    xs = xs[keep].astype(np.float64)
    fs = f[picks[keep]][:, mask].astype(np.float32).astype(np.float64)  # the same rounding as the inputs
    total = xs.sum(axis=0)
    num = den = 0.0
    for k in range(len(xs)):
        a = xs[k] - (total - xs[k]) / (len(xs) - 1)  # input minus the others' mean
        b = fs[k] - xs[k]  # the denoiser's change
        num += float(a @ b)
        den += float(b @ b)
    if den <= 0.0:
        return None
    return float(np.clip(-num / den, 0.0, 1.0)) + 0.0  # + 0.0: no "-0.000" in a manifest
