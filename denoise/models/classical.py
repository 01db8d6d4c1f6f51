"""Classical baselines behind the `Denoiser` interface: Gaussian, median, NLM, TV, wavelet, BM3D/BM4D.

All work on the normalised scale (MR: robust max = 1; CT: [-1000, 1000] HU -> [0, 1]), so a noise
``sigma`` means the same for every method. Without ``sigma`` each image's noise is estimated
(wavelet MAD). ``rician=True`` applies the post-hoc Rician bias correction
``sqrt(max(d^2 - 2 sigma^2, 0))`` for magnitude MR.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from denoise.metrics import estimate_sigma
from denoise.models.base import Denoiser
from denoise.registry import CLASSICAL, bm3d_available

__all__ = ["ClassicalDenoiser", "CLASSICAL_METHODS", "bm3d_available"]

CLASSICAL_METHODS = CLASSICAL  # the names, from the one registry (denoise.registry)


class ClassicalDenoiser(Denoiser):
    """A classical filter with the learned models' interface.

    Args:
        method: one of ``CLASSICAL_METHODS``.
        sigma: noise std on the normalised scale (oracle); None estimates it per image.
        spatial_dims: 2 filters slice by slice; 3 filters whole volumes (BM4D for ``bm3d``).
        rician: apply Rician bias correction after filtering.
        strength: multiplies the method's sigma-derived parameter (blur width, NLM h, TV weight).
    """

    def __init__(self, method: str, *, sigma: float | None = None, spatial_dims: int = 2,
                 rician: bool = False, strength: float = 1.0) -> None:
        if method not in CLASSICAL_METHODS:
            raise ValueError(f"unknown classical method {method!r}; choose from {', '.join(CLASSICAL_METHODS)}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if method == "bm3d" and not bm3d_available():
            raise ImportError("BM3D/BM4D are not installed: pip install 'denoise[bm3d]' (non-commercial licence)")
        self.method = method
        self.sigma = sigma
        self.spatial_dims = spatial_dims
        self.rician = rician
        self.strength = strength
        self.name = "bm4d" if (method == "bm3d" and spatial_dims == 3) else method

    def denoise_batch(self, batch: np.ndarray) -> np.ndarray:
        out = np.empty_like(batch, dtype=np.float32)
        for i, img in enumerate(batch):
            sigma = self.sigma if self.sigma is not None else estimate_sigma(img)
            den = _FILTERS[self.method](img.astype(np.float64), max(sigma, 1e-6), self.strength)
            if self.rician:
                den = np.sqrt(np.clip(den**2 - 2 * sigma**2, 0, None))
            out[i] = den
        return out


def _gaussian(img, sigma, strength):
    # A blur width that grows with the noise: the "smoothing control" of the benchmark.
    return ndimage.gaussian_filter(img, sigma=strength * (0.3 + 6.0 * sigma))


def _median(img, sigma, strength):
    return ndimage.median_filter(img, size=3)


def _nlm(img, sigma, strength):
    from skimage.restoration import denoise_nl_means

    patch, dist = (5, 6) if img.ndim == 2 else (3, 3)
    return denoise_nl_means(img, h=0.8 * sigma * strength, sigma=sigma, patch_size=patch,
                            patch_distance=dist, fast_mode=True)


def _tv(img, sigma, strength):
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(img, weight=1.5 * sigma * strength)


def _wavelet(img, sigma, strength):
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(img, sigma=sigma * strength, method="BayesShrink", mode="soft", rescale_sigma=True)


def _bm3d(img, sigma, strength):
    if img.ndim == 2:
        import bm3d

        return np.asarray(bm3d.bm3d(img, sigma_psd=sigma * strength))
    import bm4d

    return np.asarray(bm4d.bm4d(img, sigma_psd=sigma * strength))


_FILTERS = {"gaussian": _gaussian, "median": _median, "nlm": _nlm, "tv": _tv, "wavelet": _wavelet, "bm3d": _bm3d}
