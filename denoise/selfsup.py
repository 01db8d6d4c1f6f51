"""Self-supervised denoising losses: learning from noisy scans alone (`denoise.adapt`).

**Noise2Noise** (Lehtinen et al. 2018): two acquisitions of the same anatomy carry independent
noise, so a network trained to map one onto the other learns the mean of the target given the
input, the clean image. `repeat_indices` finds such repeats in a 4D series and refuses series whose
time points differ by more than noise (a field map beside its magnitude, different contrasts,
b-values) or that moved.

**Blind spot** (Noise2Self, Batson & Royer 2019; Noise2Void, Krull et al. 2019): a single noisy
scan is its own target at pixels the network cannot see. `blindspot_input` picks one centre per
cell of a grid (random position in the cell), replaces the ``(2r+1)`` block around each centre
(in every input channel: neighbouring slices too) by the mean of a ring just outside it, and the
loss is taken at the centres only. With noise independent beyond ``r`` pixels, the network's
input then holds nothing correlated with the noise at a centre, and the expected loss is the
error against the clean image plus the noise variance (J-invariance). A pixel-wise blind spot
(``r = 0``) leaks on spatially correlated noise (CT kernels, zero-filled or interpolated MR): the
neighbours predict the masked pixel's noise and the network learns to keep it; ``r = 1`` or ``2``
(structured masks as in structN2V) cover lag-1 correlations measured on real scans.
`radius_for_correlation` turns a measured noise correlation into a radius. Measured on real EPI
(docs/design.md), the blind spot fails where the image changes more from one pixel to the next than
the noise does (low noise, coarse pixels): a pixel predicted from its neighbours is then worse than
the noisy pixel itself.

**Recorrupted-to-recorrupted** (R2R, Pang et al. 2021): for Gaussian noise n of known covariance,
draw z of the same covariance; ``y + a z`` and ``y - z / a`` carry independent noise, so training
``f(y + a z) -> y - z / a`` is Noise2Noise from one scan, supervised at every pixel with nothing
masked (`recorrupt`). It needs the noise's level and correlation (`correlated_noise`); an
underestimated level leaves noise in (the safe side), an overestimated one smooths anatomy.

Compute only: no file I/O. Arrays on the model's intensity scale.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from denoise.realnoise import consistent_repeats

__all__ = ["blindspot_input", "masked_mse", "recorrupt", "correlated_noise", "repeat_indices", "radius_for_correlation",
           "RepeatCheck", "R2R_ALPHA"]

R2R_ALPHA = 0.5  # recorruption strength: input noise sigma*sqrt(1 + a^2), target noise sigma*sqrt(1 + 1/a^2)


def _cell(radius: int) -> int:
    """Grid cell edge for blind-spot centres: one centre per cell (1/16 of pixels at r = 0, 1/36 at 1)."""
    return 2 * radius + 4


def blindspot_input(x: torch.Tensor, radius: int, *, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input, centre mask) for a batch ``x`` of shape ``(n, channels, *spatial)`` (2D or 3D).

    One centre per grid cell (`_cell`) at a random position; every voxel within Chebyshev distance
    ``radius`` of a centre (its block), in every channel, is replaced by the value of a random voxel
    ``2 radius + 1`` or ``2 radius + 2`` voxels away that no block covers (Noise2Void's
    replacement by a random neighbour, kept outside every block): masked voxels then look like
    any other noisy voxel, so the network cannot learn a special behaviour for them that it would
    not show at inference. Returns the masked input (same shape) and the centres as a boolean
    ``(n, *spatial)`` tensor (where the loss is taken)."""
    n, c, *spatial = x.shape
    d = len(spatial)
    if d not in (2, 3):
        raise ValueError(f"blind-spot masking is for 2D or 3D batches, got spatial shape {tuple(spatial)}")
    g = _cell(radius)
    cells = [-(-s // g) for s in spatial]
    idx = torch.randint(0, g**d, (n, *cells), generator=generator, device="cpu").to(x.device)
    onehot = F.one_hot(idx, g**d).to(x.dtype).reshape(n, *cells, *([g] * d))
    perm = [0] + [p for i in range(d) for p in (1 + i, 1 + d + i)]  # interleave cell and offset axes
    centres = onehot.permute(*perm).reshape(n, *[k * g for k in cells])[(slice(None), *[slice(0, s) for s in spatial])]
    centres = centres.contiguous()
    pool = F.max_pool2d if d == 2 else F.max_pool3d
    covered = pool(centres[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0.5  # (n, *spatial)
    masked = torch.where(covered[:, None], _values_outside(x, covered, radius, generator), x)
    return masked, centres.bool()


def _values_outside(x: torch.Tensor, covered: torch.Tensor, radius: int, generator: torch.Generator | None,
                    tries: int = 8) -> torch.Tensor:
    """For every voxel, the value (all channels) of a random uncovered voxel at Chebyshev distance
    ``2r+1 .. 2r+2`` (so outside the block of any centre within ``r`` of the voxel); where none of
    ``tries`` draws qualifies, the mean of the uncovered voxels of the sample."""
    n, c, *spatial = x.shape
    d = len(spatial)
    lo, hi = 2 * radius + 1, 2 * radius + 2
    shape = (tries, n, d, *spatial)
    off = torch.randint(-hi, hi + 1, shape, generator=generator)
    axis = torch.randint(0, d, (tries, n, 1, *spatial), generator=generator)
    far = torch.randint(lo, hi + 1, (tries, n, 1, *spatial), generator=generator)
    sign = torch.randint(0, 2, (tries, n, 1, *spatial), generator=generator) * 2 - 1
    dims = torch.arange(d).reshape(1, 1, d, *([1] * d))
    off = torch.where(dims == axis, far * sign, off)  # one axis at least lo away: outside any nearby block
    grid = torch.stack(torch.meshgrid(*[torch.arange(s) for s in spatial], indexing="ij"))  # (d, *spatial)
    limit = torch.tensor(spatial).reshape(1, 1, d, *([1] * d))
    pos = (grid[None, None] + off).clamp(torch.zeros_like(limit), limit - 1)
    moved = (pos - grid[None, None]).abs().amax(dim=2)  # clamping at an edge may bring it closer
    flat = torch.zeros_like(pos[:, :, 0])
    for i in range(d):
        flat = flat * spatial[i] + pos[:, :, i]
    cov = covered.reshape(1, n, -1).expand(tries, n, -1).to("cpu")
    ok = (moved >= lo) & ~torch.gather(cov, 2, flat.reshape(tries, n, -1)).reshape(tries, n, *spatial)
    first = torch.argmax(ok.to(torch.uint8), dim=0)  # the first good draw (0 if none: checked below)
    chosen = torch.gather(flat, 0, first[None])[0]  # (n, *spatial)
    found = ok.any(dim=0)
    src = x.reshape(n, c, -1)
    vals = torch.gather(src, 2, chosen.reshape(n, 1, -1).expand(n, c, -1).to(x.device)).reshape(x.shape)
    keep = (~covered)[:, None].to(x.dtype)
    mean = (x * keep).sum(dim=tuple(range(2, 2 + d)), keepdim=True) / keep.sum(dim=tuple(range(2, 2 + d)), keepdim=True).clamp_min(1.0)
    return torch.where(found[:, None].to(x.device), vals, mean)


MAX_CORR = 0.7  # the [a, 1, a] kernel's largest lag-1 correlation is 1/sqrt(2); 0.7 keeps a real


def correlated_noise(shape: tuple[int, ...], rho: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit-variance Gaussian noise of ``shape`` (..., y, x) whose lag-1 correlation between
    in-plane neighbours is ``rho`` (0 <= rho <= 0.7) along both in-plane axes: white noise through
    the separable kernel [a, 1, a] with 2a / (1 + 2a^2) = rho, rescaled to unit variance."""
    rho = float(min(max(rho, 0.0), MAX_CORR))
    w = torch.randn(shape, generator=generator)
    if rho < 1e-3:
        return w
    a = (1.0 - (1.0 - 2.0 * rho * rho) ** 0.5) / (2.0 * rho)
    k = torch.tensor([a, 1.0, a]) / (1.0 + 2.0 * a * a) ** 0.5
    flat = w.reshape(-1, 1, *shape[-2:])
    flat = F.conv2d(F.pad(flat, (1, 1, 0, 0), mode="circular"), k.reshape(1, 1, 1, 3))
    flat = F.conv2d(F.pad(flat, (0, 0, 1, 1), mode="circular"), k.reshape(1, 1, 3, 1))
    return flat.reshape(shape)


def recorrupt(x: torch.Tensor, sigma: torch.Tensor, rho: torch.Tensor, *, alpha: float = R2R_ALPHA,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``x + alpha z``, ``x - z / alpha``) for a batch ``x`` ``(n, channels, *spatial)``, with z
    Gaussian of per-sample std ``sigma`` and in-plane lag-1 correlation ``rho`` (each ``(n,)``)."""
    z = torch.stack([correlated_noise(tuple(x.shape[1:]), float(r), generator) * float(s) for s, r in zip(sigma, rho)])
    z = z.to(x.dtype)
    return x + alpha * z, x - z / alpha


def masked_mse(output: torch.Tensor, target: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Mean squared error at the blind-spot centres; ``output``/``target`` ``(n, 1, *spatial)``."""
    return ((output[:, 0] - target[:, 0]) ** 2)[centres].mean()


def radius_for_correlation(lag1: float | None) -> int:
    """Blind-spot radius for noise whose lag-1 correlation between neighbouring pixels is ``lag1``:
    0 for white noise (< 0.1), 1 up to 0.5, else 2; unknown (None/NaN) -> 1, the safe side."""
    if lag1 is None or not np.isfinite(lag1):
        return 1
    return 0 if lag1 < 0.1 else 1 if lag1 < 0.5 else 2


class RepeatCheck:
    """The outcome of `repeat_indices`: ``kept`` (indices usable as Noise2Noise repeats, empty if
    none) and ``reason`` (why the series is not a repeat set, or which time points were left out)."""

    def __init__(self, kept: list[int], reason: str) -> None:
        self.kept, self.reason = kept, reason

    def __bool__(self) -> bool:
        return len(self.kept) >= 2


def repeat_indices(series: np.ndarray, *, min_correlation: float = 0.9, max_scale_change: float = 0.1) -> RepeatCheck:
    """Which time points of a 4D ``series`` (t, z, y, x) are repeats of one image (same anatomy,
    same contrast, only noise differs), for Noise2Noise pairs.

    A repeat set needs every kept time point to correlate with the voxel-wise median over the
    foreground by at least ``min_correlation`` and its mean intensity within ``max_scale_change``
    of the median's: different contrasts (a field map beside its magnitude, diffusion weightings)
    fail. Moved or saturated time points are left out (`denoise.realnoise.consistent_repeats`).
    """
    a = np.asarray(series, dtype=np.float64)
    if a.ndim != 4 or a.shape[0] < 2:
        return RepeatCheck([], "not a 4D series with >= 2 time points")
    med = np.median(a, axis=0)
    fg = med > 0.1 * np.percentile(med, 99)
    if fg.sum() < 100:
        return RepeatCheck([], "too little foreground to compare time points")
    mean = med[fg].mean()
    good = []
    for t, vol in enumerate(a):
        v = vol[fg]
        c = np.corrcoef(v, med[fg])[0, 1] if v.std() > 0 else 0.0
        if np.isfinite(c) and c >= min_correlation and abs(v.mean() / mean - 1) <= max_scale_change:
            good.append(t)
    if len(good) < 2:
        return RepeatCheck([], f"time points differ by more than noise (only {len(good)} of {len(a)} match their median "
                                "in contrast and intensity): not repeats of one image")
    still = [good[i] for i in consistent_repeats(a[good], fg)]
    left = sorted(set(range(len(a))) - set(still))
    return RepeatCheck(still, f"time points {', '.join(map(str, left))} left out (moved, saturated or another contrast)"
                       if left else "")
