"""The noise-level estimate the DAEs are told (their noise-level channel), shared by training,
inference, benchmarks and `denoise adapt`: Donoho's wavelet MAD (`wavelet_sigma`), averaged over
foreground tiles of the training patch size (`noise_level`), as a constant input channel
(`with_noise_channel`). Estimators only: no training data logic, no file I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["with_noise_channel", "noise_level", "wavelet_sigma", "foreground_threshold"]


def with_noise_channel(batch: np.ndarray, patch: int | None = None, sigma: float | None = None) -> np.ndarray:
    """Append a constant channel holding each sample's estimated noise sigma (wavelet MAD of its
    centre channel): ``(n, c, *spatial) -> (n, c + 1, *spatial)``.

    Training estimates on each training patch. At inference, pass the training ``patch`` size:
    images larger than that are estimated like training patches were, as the mean over
    foreground-centred tiles of that size (a whole slice with much background would otherwise
    read lower than the patches the model learnt from). A given ``sigma`` (same convention) is
    used for every sample instead of the estimate."""
    k = batch.shape[1] // 2
    sig = np.array([noise_level(b[k], patch) if sigma is None else sigma for b in batch], dtype=np.float32)
    maps = np.broadcast_to(sig.reshape(-1, 1, *([1] * (batch.ndim - 2))), (batch.shape[0], 1, *batch.shape[2:]))
    return np.concatenate([batch, maps], axis=1)


def noise_level(image: np.ndarray, patch: int | None = None, max_tiles: int = 16, *,
                noise: np.ndarray | None = None) -> float:
    """Wavelet-MAD noise sigma of ``image``; with ``patch``, the mean over up to ``max_tiles``
    foreground-centred tiles of edge ``patch`` (the `PatchSampler` foreground rule).

    With ``noise`` (an array like ``image``: the true added noise, in benchmarks), the tiles are
    still chosen on ``image`` but the estimate is read from ``noise``: what the estimator would
    say if the image carried no noise of its own (the oracle in the model's own convention)."""
    src = image if noise is None else noise
    if patch is None or all(s <= patch for s in image.shape):
        return wavelet_sigma(src)
    thr = foreground_threshold(image)
    sizes = [min(patch, s) for s in image.shape]
    grids = [np.arange(0, s - p + 1, max(1, p // 2)) for s, p in zip(image.shape, sizes)]
    starts = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, image.ndim)
    centres = starts + np.array(sizes) // 2
    starts = starts[image[tuple(centres.T)] > thr]
    if len(starts) == 0:
        return wavelet_sigma(src)
    starts = starts[np.linspace(0, len(starts) - 1, min(max_tiles, len(starts))).astype(int)]
    return float(np.mean([wavelet_sigma(src[tuple(slice(a, a + p) for a, p in zip(st, sizes))]) for st in starts]))


def wavelet_sigma(image: np.ndarray) -> float:
    """`denoise.metrics.estimate_sigma` computed through PyWavelets directly: Donoho's MAD of the
    finest db2 diagonal wavelet coefficients (zeros excluded), per slice, volumes averaging up to
    16 slices. Equal to the skimage route (tested); it runs for every tile of every slice at
    inference, where skimage's wrapper costs as much again as the computation."""
    import pywt

    a = np.asarray(image, dtype=np.float64)
    slices = a.reshape(-1, *a.shape[-2:]) if a.ndim > 2 else a[None]
    values = []
    for s in slices[:: max(1, len(slices) // 16)]:
        d = pywt.dwtn(s, "db2")["dd"]
        d = np.abs(d[d != 0])
        if d.size:
            values.append(float(np.median(d)) / 0.6744897501960817)
    return float(np.mean(values)) if values else 0.0


def foreground_threshold(image: np.ndarray) -> float:
    """Intensity above which a voxel counts as foreground for patch sampling: 10% of the way from
    the 0.5th to the 99.5th percentile."""
    low, high = np.percentile(image, [0.5, 99.5])
    return 0.1 * float(high) + 0.9 * float(low)
