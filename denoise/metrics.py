"""PSNR / SSIM with an explicit data range and optional foreground mask; noise-sigma estimate.

Protocol (docs/metrics.md): PSNR from the MSE over the whole volume (or its mask), never a mean of
per-slice values; SSIM with Wang et al. settings (Gaussian window sigma 1.5, K1 0.01, K2 0.03,
population covariance) computed as a map over the volume (3D when every axis has >= 11 voxels,
otherwise slice by slice) and averaged over the mask. The data range is always given by the
caller: MR, the clean reference's `reference_intensity`; CT, a declared HU window (2000 HU).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["psnr", "ssim", "foreground_mask", "estimate_sigma", "data_range_for", "CT_DATA_RANGE"]

CT_DATA_RANGE = 2000.0  # HU window [-1000, 1000]
_PAD = 5  # half of the 11-tap Gaussian SSIM window (sigma 1.5, truncate 3.5)


def data_range_for(reference: np.ndarray, modality: str) -> float:
    """The data range every score of the package uses (the one home of the rule): CT, the declared
    2000-HU window (`CT_DATA_RANGE`); any other modality, the clean reference's robust maximum
    (`denoise.normalize.reference_intensity`)."""
    if modality.upper() == "CT":
        return CT_DATA_RANGE
    from denoise.normalize import reference_intensity

    return reference_intensity(reference)


def psnr(reference: np.ndarray, test: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)`` over the mask.

    Args:
        reference: the clean image, any shape.
        test: the image to score, same shape.
        data_range: the peak (required; never derived from the images).
        mask: optional boolean array of the same shape; the MSE is taken over it.
    """
    ref, tst, m = _check(reference, test, data_range, mask)
    err = (ref - tst) ** 2
    mse = float(err[m].mean()) if m is not None else float(err.mean())
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(reference: np.ndarray, test: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """Structural similarity (Wang et al. 2004), mean of the SSIM map over the mask.

    3D SSIM for volumes whose axes all have >= 11 voxels; otherwise the map is computed slice by
    slice along the first axis (still averaged over the whole mask, not per slice).
    """
    from skimage.metrics import structural_similarity

    ref, tst, m = _check(reference, test, data_range, mask)
    kw = dict(data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
    if ref.ndim == 2 or min(ref.shape) >= 11:
        _, smap = structural_similarity(ref, tst, **kw)
        crop_axes = range(ref.ndim)
    else:
        smap = np.stack([structural_similarity(r, t, **kw)[1] for r, t in zip(ref, tst)])
        crop_axes = range(1, ref.ndim)
    # Like skimage, ignore the border where the 11-tap window runs off the image.
    valid = np.zeros(ref.shape, dtype=bool)
    valid[tuple(slice(_PAD, -_PAD) if a in crop_axes and ref.shape[a] > 2 * _PAD else slice(None)
                for a in range(ref.ndim))] = True
    keep = valid & m if m is not None else valid
    if not keep.any():
        keep = m if m is not None else np.ones(ref.shape, dtype=bool)
    return float(smap[keep].mean())


def foreground_mask(reference: np.ndarray, *, threshold: float = 0.1, dilate: int = 2) -> np.ndarray:
    """Foreground of a clean image: threshold, closing, hole filling (per slice), dilation.

    The threshold is ``low + threshold * (high - low)`` with low/high the 0.5th/99.5th
    percentiles, so it works for MR (zero background) and CT (air at -1000 HU) alike.
    """
    a = np.asarray(reference, dtype=np.float32)
    low, high = np.percentile(a, [0.5, 99.5])
    m = a > low + threshold * (high - low)
    structure = ndimage.generate_binary_structure(a.ndim, 1)
    m = ndimage.binary_closing(m, structure=structure, iterations=2, border_value=0)
    if a.ndim == 2:
        m = ndimage.binary_fill_holes(m)
    else:
        m = np.stack([ndimage.binary_fill_holes(s) for s in m.reshape(-1, *a.shape[-2:])]).reshape(a.shape)
    if dilate:
        m = ndimage.binary_dilation(m, structure=structure, iterations=dilate)
    if not m.any():  # almost empty image: everything above the background level
        m = a > low
    return m if m.any() else np.ones(a.shape, dtype=bool)


def estimate_sigma(image: np.ndarray) -> float:
    """Noise standard deviation of an image without a reference (wavelet MAD, skimage).

    For volumes the per-slice estimates along the first axis are averaged. Gaussian-noise
    assumption: for Rician MR it reads the foreground noise, for CT the high-frequency part.
    """
    import warnings

    from skimage.restoration import estimate_sigma as _sk_estimate

    a = np.asarray(image, dtype=np.float64)
    slices = a.reshape(-1, *a.shape[-2:]) if a.ndim > 2 else a[None]
    step = max(1, len(slices) // 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant images: no coefficients
        values = [float(_sk_estimate(s)) for s in slices[::step]]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else 0.0


def _check(reference, test, data_range, mask):
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: reference {ref.shape} vs test {tst.shape}")
    if data_range is None or not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    m = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != ref.shape:
            raise ValueError(f"mask shape {m.shape} differs from image shape {ref.shape}")
        if not m.any():
            raise ValueError("mask is empty")
    return ref, tst, m
