"""Scoring denoisers on real noise: repeated acquisitions as their own reference, and noise statistics.

**Repeats.** For a scan with K >= 2 repeats r_1..r_K of the same anatomy (fMRI time points, NEX
saved separately, several b=0 volumes), denoise repeat k and compare it with the mean of the
other K-1 repeats. That reference carries noise of its own, independent of repeat k's: with
per-voxel noise variance sigma^2, E|d - ref|^2 = |d - x|^2 + sigma^2/(K-1), so subtracting
sigma^2/(K-1) from the MSE gives an unbiased estimate of the error against the unknown clean x.
sigma^2 is estimated from the repeats themselves (the per-voxel sample variance across all K
repeats, averaged over the mask). SSIM is corrected the same way: the reference's local variance is
lowered by sigma^2/(K-1) (its local mean and its covariance with d are unbiased already).
Motion or signal drift between repeats inflates sigma^2 and lowers every method's score alike;
`repeat_stability` reports it so it can be seen, and `consistent_repeats` keeps only the repeats that
differ from the others by noise alone (a real fMRI series had 4 of 10 time points moved).

**Noise statistics** (how real a noise model is, issue #28): `lag_correlation` of a noise image
(a repeat difference, or synthetic noisy - clean) between neighbouring pixels along an axis, and
`chi_dof` (the degrees of freedom of a chi distribution fitted to a background region's
magnitudes by the moments: 2 for Rician/Rayleigh background, 2N for an N-coil sum of squares).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special

__all__ = ["noise_profile", "background_values", "consistent_repeats", "repeat_noise_variance", "unbiased_psnr", "unbiased_ssim", "repeat_stability", "lag_correlation",
           "chi_dof", "score_repeat", "no_reference_measures"]

_SIGMA, _TRUNCATE = 1.5, 3.5  # the Gaussian SSIM window of denoise.metrics (Wang et al.)


def repeat_noise_variance(repeats: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Noise variance per voxel from K >= 2 repeats (axis 0): the mean over the mask of the per-voxel
    sample variance across repeats (ddof 1)."""
    repeats = np.asarray(repeats, dtype=np.float64)
    if repeats.shape[0] < 2:
        raise ValueError("need at least 2 repeats to estimate the noise")
    var = repeats.var(axis=0, ddof=1)
    return float(var[mask].mean() if mask is not None else var.mean())


def consistent_repeats(repeats: np.ndarray, mask: np.ndarray | None = None, *, slack: float = 2.0) -> list[int]:
    """Indices of the repeats that differ from each other by noise only (no motion, no saturation).

    Each repeat's correlation with the voxel-wise median of all repeats (over the mask) is 1 minus a
    noise term, the same for every still repeat; a moved or saturated one falls further. Kept: the
    repeats whose decorrelation ``1 - c`` is at most ``slack`` times the smallest one plus 0.002.
    """
    repeats = np.asarray(repeats, dtype=np.float64)
    med = np.median(repeats, axis=0)
    sel = mask if mask is not None else np.ones(med.shape, bool)
    with np.errstate(invalid="ignore", divide="ignore"):  # a blank repeat: NaN, handled below, no warning
        corr = np.array([np.corrcoef(r[sel], med[sel])[0, 1] for r in repeats])
    gap = np.where(np.isfinite(corr), 1.0 - corr, np.inf)  # a blank (constant) repeat has no correlation
    keep = [int(i) for i in np.flatnonzero(gap <= slack * gap.min() + 0.002)]
    return keep if len(keep) >= 2 else sorted(int(i) for i in np.argsort(gap)[:2])


def _reference(repeats: np.ndarray, k: int) -> np.ndarray:
    others = np.delete(np.asarray(repeats, dtype=np.float64), k, axis=0)
    return others.mean(axis=0)


def unbiased_psnr(denoised: np.ndarray, repeats: np.ndarray, k: int, *, data_range: float,
                  mask: np.ndarray | None = None, noise_var: float | None = None) -> float:
    """PSNR of ``denoised`` (repeat ``k`` denoised) against the unknown clean image, estimated from
    the mean of the other repeats with their noise removed from the MSE (module docstring)."""
    repeats = np.asarray(repeats, dtype=np.float64)
    n_other = repeats.shape[0] - 1
    ref = _reference(repeats, k)
    var = repeat_noise_variance(repeats, mask) if noise_var is None else noise_var
    err = (np.asarray(denoised, dtype=np.float64) - ref) ** 2
    mse = float(err[mask].mean() if mask is not None else err.mean()) - var / n_other
    if mse <= 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def unbiased_ssim(denoised: np.ndarray, repeats: np.ndarray, k: int, *, data_range: float,
                  mask: np.ndarray | None = None, noise_var: float | None = None) -> float:
    """SSIM of ``denoised`` against the unknown clean image (Gaussian window, K1 0.01, K2 0.03, slice
    by slice along the first axis), the reference's local variance corrected for its own noise."""
    repeats = np.asarray(repeats, dtype=np.float64)
    n_other = repeats.shape[0] - 1
    ref = _reference(repeats, k)
    var_noise = (repeat_noise_variance(repeats, mask) if noise_var is None else noise_var) / n_other
    d = np.asarray(denoised, dtype=np.float64)
    sig = [0.0] * (d.ndim - 2) + [_SIGMA, _SIGMA]

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sig, truncate=_TRUNCATE, mode="reflect")

    mu_d, mu_r = blur(d), blur(ref)
    var_d = blur(d * d) - mu_d**2
    var_r = np.maximum(blur(ref * ref) - mu_r**2 - var_noise, 0.0)
    cov = blur(d * ref) - mu_d * mu_r
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mu_d * mu_r + c1) * (2 * cov + c2)) / ((mu_d**2 + mu_r**2 + c1) * (var_d + var_r + c2))
    return float(smap[mask].mean() if mask is not None else smap.mean())


def repeat_stability(repeats: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Relative spread of the repeats' mean intensity over the mask (std / mean): signal drift or
    saturation between repeats (fMRI dummy scans) shows here, not as noise."""
    repeats = np.asarray(repeats, dtype=np.float64)
    means = np.array([r[mask].mean() if mask is not None else r.mean() for r in repeats])
    return float(means.std(ddof=1) / abs(means.mean())) if len(means) > 1 and means.mean() else 0.0


def score_repeat(denoised: np.ndarray, repeats: np.ndarray, k: int, *, data_range: float,
                 mask: np.ndarray | None = None) -> dict[str, float]:
    """Unbiased PSNR and SSIM of repeat ``k`` denoised, with the noise sigma used (one call)."""
    var = repeat_noise_variance(repeats, mask)
    return {"psnr": unbiased_psnr(denoised, repeats, k, data_range=data_range, mask=mask, noise_var=var),
            "ssim": unbiased_ssim(denoised, repeats, k, data_range=data_range, mask=mask, noise_var=var),
            "sigma": math.sqrt(var)}


def lag_correlation(noise: np.ndarray, *, axis: int = -1, mask: np.ndarray | None = None) -> float:
    """Pearson correlation between each noise value and its neighbour one pixel further along
    ``axis`` (pairs where both pixels are in ``mask``). White noise: 0; zero-filled by 2: ~0.6."""
    n = np.asarray(noise, dtype=np.float64)
    a = np.moveaxis(n, axis, -1)
    x, y = a[..., :-1], a[..., 1:]
    if mask is not None:
        m = np.moveaxis(np.asarray(mask, bool), axis, -1)
        keep = m[..., :-1] & m[..., 1:]
        x, y = x[keep], y[keep]
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom else 0.0


def chi_dof(values: np.ndarray) -> float:
    """Degrees of freedom of the chi distribution (times an unknown scale) that matches the mean and
    variance of background magnitudes: Rayleigh (Rician background) gives 2, an N-coil
    sum of squares 2N. Solves mean^2 / E[x^2] = 2 Gamma((k+1)/2)^2 / (k Gamma(k/2)^2) for k."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 10 or not np.any(v > 0):
        return float("nan")
    ratio = v.mean() ** 2 / np.mean(v * v)

    def r(k: float) -> float:
        return 2.0 * math.exp(2 * special.gammaln((k + 1) / 2) - 2 * special.gammaln(k / 2)) / k

    lo, hi = 0.05, 400.0  # r(k) increases with k towards 1
    if ratio <= r(lo):
        return lo
    if ratio >= r(hi):
        return hi
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if r(mid) < ratio else (lo, mid)
    return float(math.sqrt(lo * hi))


def noise_profile(image: np.ndarray, *, noise: np.ndarray | None = None, margin: int = 6) -> dict[str, float]:
    """How a scan's noise looks, for comparing real scans with simulated kinds (issue #28):

    - ``lag1_x`` / ``lag1_y``: `lag_correlation` of ``noise`` (a repeat difference, or noisy - clean)
      along columns / rows inside the foreground (found on a smoothed copy, eroded by ``margin``
      voxels: away from edges and dark tissue, where a magnitude's bias would pass for
      correlation; NaN without ``noise``);
    - ``bg_dof``: `chi_dof` of the background magnitudes (voxels more than ``margin`` voxels outside
      the foreground, exact zeros left out; NaN when the background is zeroed, as in masked or
      defaced data); 2 = Rician, 2N = an N-coil sum of squares; ``bg_lag1``: their lag-1
      correlation, the larger of the two in-plane axes (the magnitude's correlation: about the
      square of the complex noise's; zero-filling by 2 gives ~0.4). Without ``noise``, a volume is
      profiled on at most 16 evenly spaced slices.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim < 2 or img.size == 0:
        return {"lag1_x": float("nan"), "lag1_y": float("nan"), "bg_dof": float("nan"), "bg_lag1": float("nan")}
    if noise is None:
        img = _profiled_slices(img)
    fg, bg, plane = _tissue_and_air(img, margin)
    out = {"lag1_x": float("nan"), "lag1_y": float("nan"), "bg_dof": float("nan"), "bg_lag1": float("nan")}
    if noise is not None:
        inner = ndimage.binary_erosion(fg, plane, iterations=margin)  # away from edges and magnitude bias
        out["lag1_x"] = lag_correlation(noise, axis=-1, mask=inner)
        out["lag1_y"] = lag_correlation(noise, axis=-2, mask=inner)
    if bg is not None:
        out["bg_dof"] = chi_dof(img[bg])
        centred = img - img[bg].mean()
        out["bg_lag1"] = max(lag_correlation(centred, axis=a, mask=bg) for a in (-1, -2))
    return out


def background_values(image: np.ndarray, *, margin: int = 6) -> np.ndarray | None:
    """The background magnitudes `noise_profile` reads (voxels more than ``margin`` voxels outside
    the foreground, exact zeros left out, at most 16 slices of a volume), or None where there is
    no usable background (zeroed, or too little air)."""
    img = _profiled_slices(np.asarray(image, dtype=np.float32))
    if img.ndim < 2 or img.size == 0:
        return None
    _, bg, _ = _tissue_and_air(img, margin)
    return None if bg is None else img[bg]


def _profiled_slices(img: np.ndarray) -> np.ndarray:
    """A profile, not an inventory: at most 16 evenly spaced slices of a large volume."""
    if img.ndim <= 2:
        return img
    flat = img.reshape(-1, *img.shape[-2:])
    return flat[:: max(1, len(flat) // 16)]


def _tissue_and_air(img: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(foreground, background or None, the in-plane structuring element) of a noisy image: the
    foreground a threshold on a smoothed copy; the background the voxels more than ``margin``
    voxels outside it, exact zeros left out, None unless it has > 1000 voxels and > 1/4 of the
    non-foreground."""
    sig = [0.0] * (img.ndim - 2) + [2.0, 2.0]
    smooth = ndimage.gaussian_filter(img, sig)
    low, high = np.percentile(smooth, [0.5, 99.5])
    fg = smooth > low + 0.1 * (high - low)
    plane = np.zeros((3,) * img.ndim, bool)  # in-plane neighbours only: thin slabs keep their slices
    plane[(1,) * (img.ndim - 2)] = ndimage.generate_binary_structure(2, 1)
    bg = ~ndimage.binary_dilation(fg, plane, iterations=margin) & (img != 0)
    return fg, (bg if bg.sum() > 1000 and bg.sum() > 0.25 * (~fg).sum() else None), plane


MAX_SLICES = 16


def sample_slices(array: np.ndarray, max_slices: int = MAX_SLICES) -> np.ndarray:
    """Up to ``max_slices`` evenly spaced 2D slices of ``array`` (the last two axes in-plane;
    a 4D series' volumes one after the other) as float64, (n, y, x); a 2D image stays 2D."""
    a = np.asarray(array)
    if a.ndim <= 2:
        return a.astype(np.float64)
    flat = a.reshape(-1, *a.shape[-2:])
    keep = np.unique(np.linspace(0, len(flat) - 1, min(max_slices, len(flat))).round().astype(int))
    return flat[keep].astype(np.float64)


def no_reference_measures(noisy: np.ndarray, denoised: np.ndarray) -> dict[str, float]:
    """What can be said of a denoised real scan without any reference (issue #27, section 2):

    - ``sigma_before`` / ``sigma_after``: the wavelet-MAD noise estimate (`denoise.metrics.estimate_sigma`)
      of input and output, in the scan's units; their ratio says how much noise went;
    - ``removed_image_corr``: Pearson correlation, inside the foreground, of the removed component
      (``noisy - denoised``) with the image (the output blurred in-plane, Gaussian sigma 1 px, so its
      own leftover noise does not count): near 0 when only noise went, away from 0 when anatomy did
      (the no-reference twin of `denoise.fidelity.residual_correlation`);
    - ``pattern_ratio``: the output's 2-pixel-periodic energy over the input's
      (`denoise.fidelity.periodic_pattern`): above 1 means the denoiser added a grid.

    Volumes are measured on at most `MAX_SLICES` evenly spaced slices (`sample_slices`), so the
    memory these take does not grow with the scan (a 600-slice CT took 5 GB more than the run itself).
    """
    from denoise.fidelity import periodic_pattern
    from denoise.metrics import estimate_sigma, foreground_mask

    y, d = sample_slices(noisy), sample_slices(denoised)  # memory bounded by 16 slices, whatever the scan
    image = ndimage.gaussian_filter(d, [0.0] * (d.ndim - 2) + [1.0, 1.0])
    fg = foreground_mask(image)
    removed, img = (y - d)[fg], image[fg]
    corr = float(np.corrcoef(removed, img)[0, 1]) if removed.std() > 0 and img.std() > 0 else 0.0
    p_in = periodic_pattern(y)
    return {"sigma_before": float(estimate_sigma(y)), "sigma_after": float(estimate_sigma(d)), "removed_image_corr": corr,
            "pattern_ratio": float(periodic_pattern(d) / p_in) if p_in > 0 else float("nan")}
