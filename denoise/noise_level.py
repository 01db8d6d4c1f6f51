"""The noise-level estimate the DAEs are told (their noise-level channel), shared by training,
inference, benchmarks and `denoise adapt`: Donoho's wavelet MAD (`wavelet_sigma`), averaged over
foreground tiles of the training patch size (`noise_level`), as a constant input channel
(`with_noise_channel`), or at inference as a smooth map over the image where the noise varies in
space (`noise_level_map`, `noise_spread`). Estimators only: no training data logic, no file I/O.
"""

from __future__ import annotations

import numpy as np

__all__ = ["with_noise_channel", "plane_levels", "noise_level", "noise_level_map", "noise_spread", "wavelet_sigma", "foreground_threshold",
           "SPREAD_FOR_MAP", "NOISE_LEVELS"]


def with_noise_channel(batch: np.ndarray, patch: int | None = None, sigma: float | None = None,
                       spatial: bool = False, scale: float = 1.0, levels: np.ndarray | None = None) -> np.ndarray:
    """Append a channel holding each sample's estimated noise sigma (wavelet MAD of its centre
    channel): ``(n, c, *spatial) -> (n, c + 1, *spatial)``; constant per sample, or with
    ``spatial`` (2D samples, ``patch`` given) the smooth map of `noise_level_map`.

    Training estimates on each training patch. At inference, pass the training ``patch`` size:
    images larger than that are estimated like training patches were, as the mean over
    foreground-centred tiles of that size (a whole slice with much background would otherwise
    read lower than the patches the model learnt from). A given ``sigma`` (same convention) is
    used for every sample instead of the estimate. ``scale`` multiplies the estimates (constant or
    map) in tissue, not in air (`tissue_weight`; the channel is then a map) and not a given
    ``sigma``: a model's operating point (`LearnedDenoiser` ``noise_scale``). ``levels`` (``(n,
    *spatial)``): levels estimated elsewhere, used instead of estimating on each sample and scaled
    like an estimate (three-plane inference: `plane_levels`); a given ``sigma`` still wins."""
    k = batch.shape[1] // 2
    if levels is not None and sigma is None:
        if levels.shape != (batch.shape[0], *batch.shape[2:]):
            raise ValueError(f"levels of shape {levels.shape} do not match the batch {batch.shape}")
        maps = np.asarray(levels, dtype=np.float32)[:, None]
    elif spatial and sigma is None and patch is not None and batch.ndim == 4:
        maps = np.stack([noise_level_map(b[k], patch)[0] for b in batch])[:, None]
    else:
        sig = np.array([noise_level(b[k], patch) if sigma is None else sigma for b in batch], dtype=np.float32)
        maps = np.broadcast_to(sig.reshape(-1, 1, *([1] * (batch.ndim - 2))), (batch.shape[0], 1, *batch.shape[2:]))
    if sigma is None and scale != 1.0:  # the operating point holds in tissue; air is denoised in full
        weights = np.stack([tissue_weight(b[k], float(np.mean(m))) for b, m in zip(batch, maps)])
        maps = maps * (1.0 - (1.0 - scale) * weights[:, None])
    return np.concatenate([batch, maps.astype(batch.dtype)], axis=1)


def plane_levels(volume: np.ndarray, patch: int | None, spatial: bool = False) -> np.ndarray:
    """The noise level of every voxel of ``volume`` (z, y, x) as its slice along the first axis reads it: each
    slice's `noise_level` (or, with ``spatial``, its `noise_level_map`), stacked. Three-plane
    inference gives these to the sagittal and coronal planes (`with_noise_channel` ``levels``): a
    plane of a thin slab (16 x 256 pixels) is too small to estimate its own noise (per-image
    estimates 0.6-1.2x the true level on a held-out T1 slab), while every axial slice is read
    from a whole image; in each slice the levels are what the slice-by-slice path estimates."""
    if spatial and patch is not None:
        return np.stack([noise_level_map(s, patch)[0] for s in volume]).astype(np.float32)
    sig = np.array([noise_level(s, patch) for s in volume], dtype=np.float32)
    return np.broadcast_to(sig[:, None, None], volume.shape).copy()


TISSUE_SMOOTH = 2.0  # pixels: the image is smoothed this much before the foreground threshold
# x the image's estimated noise: smoothed air never reaches it (magnitude air is Rayleigh, mean 1.25
# sigma; the wavelet estimate reads such air as its spread, ~0.66 sigma, so 3x is ~2 sigma)
AIR_NOISE = 3.0
TISSUE_MARGIN = 4  # pixels: the mask is grown this much (tissue edges keep the operating point)
TISSUE_EDGE = 3.0  # pixels: then the mask's edge is blurred this much


def tissue_weight(image: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """A soft foreground mask of ``image`` (2D or 3D), 1 in tissue and 0 in air, for where a
    model's ``noise_scale`` applies: the image smoothed (Gaussian, `TISSUE_SMOOTH` pixels, so the
    background's noise does not cross the threshold), thresholded at `foreground_threshold` but at
    least `AIR_NOISE` x ``noise`` (the image's noise sigma: an image of air alone, such as a
    sagittal slice beside the head, has a foreground threshold inside its own noise), grown
    by `TISSUE_MARGIN` (the edges of tissue keep the operating point) and its edge blurred
    (`TISSUE_EDGE`), so that the level the network is told changes smoothly.
    Telling a network less than the noise it sees keeps faint structure in tissue, but in the
    magnitude image's air it leaves Rayleigh noise that a full-level network removes (mr-2d told
    0.875x on the whole held-out T1 volume at Rician 9%: background RMS 8.5 -> 16.8)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image.astype(np.float32, copy=False), TISSUE_SMOOTH)
    threshold = max(foreground_threshold(smooth), AIR_NOISE * noise)
    mask = ndimage.binary_dilation(smooth > threshold, iterations=TISSUE_MARGIN)
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), TISSUE_EDGE), 0.0, 1.0)


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
    if image.ndim == 2:  # all tiles in one transform (`wavelet_sigma` of each, as in the loop below)
        tiles = np.lib.stride_tricks.sliding_window_view(src, tuple(sizes))[tuple(starts.T)]
        return float(np.mean(_finest_sigmas(tiles)))
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


# A scan's median `noise_level_map` spread from which `noise_level="auto"` feeds the map: on the
# held-out T1 slabs with uniform Rician noise the per-scan median read 1.09-1.31 (5-9%; 1.0 below 3%:
# no map), with a 2-8% ramp 1.42, SENSE R=3 1.42-1.44, R=4 1.96 (docs/design.md, "A noise-level map")
SPREAD_FOR_MAP = 1.4
NOISE_LEVELS = ("auto", "map", "constant")  # what a noise-level channel is told (`LearnedDenoiser.with_noise_level`)
MIN_MAP_TILES = 12
NOISE_TILE_RATIO = 1.2  # map tiles: `_scales` ratio at most this (the noise, not anatomy, fills the finest scale)
BRIGHT_TILE = 0.25  # map tiles: median above this fraction of the 99.5th percentile (Rician: dark tiles read low)


def noise_level_map(image: np.ndarray, patch: int, *, noise: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """A smooth map of the noise level over a 2D ``image`` and its spread (max / min over the
    foreground): the `noise_level` tile estimates (edge ``patch``, half-overlapping, foreground
    centres), fitted with a quadratic surface in log sigma (robust: tiles off the first fit by more
    than 2.5 MADs are dropped, then refitted), clipped to the tiles' own range. Noise that varies
    in space varies smoothly (parallel-imaging g-factor, receive-coil profiles after intensity
    correction); tile to tile jitter and anatomy-inflated tiles are what the fit rejects.
    Fewer than `MIN_MAP_TILES` foreground tiles: a constant map (`noise_level`), spread 1.
    ``noise``: read the estimates from it instead (the oracle, as in `noise_level`)."""
    src = image if noise is None else noise
    tiles = _tile_estimates(image, src, patch)
    if tiles is None:
        return np.full(image.shape, noise_level(image, patch, noise=noise), dtype=np.float32), 1.0
    centres, sig = tiles
    shape = np.array(image.shape, dtype=np.float64)
    design = lambda c: _quadratic((c / shape) * 2 - 1)  # noqa: E731
    a = design(centres)
    logs = np.log(np.maximum(sig, 1e-12))
    coef = np.linalg.lstsq(a, logs, rcond=None)[0]
    resid = logs - a @ coef
    mad = 1.4826 * np.median(np.abs(resid - np.median(resid))) + 1e-12
    keep = np.abs(resid) <= 2.5 * mad
    if keep.sum() >= MIN_MAP_TILES:
        coef = np.linalg.lstsq(a[keep], logs[keep], rcond=None)[0]
    lo, hi = float(sig[keep].min()), float(sig[keep].max())
    at_tiles = np.clip(np.exp(a[keep] @ coef), lo, hi)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in image.shape], indexing="ij"), -1)
    full = np.clip(np.exp(design(grid.reshape(-1, 2)) @ coef), lo, hi).reshape(image.shape)
    return full.astype(np.float32), float(at_tiles.max() / max(at_tiles.min(), 1e-12))


def noise_spread(array: np.ndarray, patch: int, slices: int = 5) -> float:
    """The median `noise_level_map` spread of up to ``slices`` slices spread over the middle 40% of
    the first axis of a volume ``(z, y, x)`` (a 4D series: its first volume; a 2D image: itself);
    1.0 where no map can be fitted. Ratios of noise estimates: unchanged by scaling the intensities."""
    a = np.asarray(array)
    while a.ndim > 3:
        a = a[0]
    if a.ndim == 2:
        return noise_level_map(a, patch)[1]
    picks = np.unique(np.linspace(0.3 * (len(a) - 1), 0.7 * (len(a) - 1), min(slices, len(a))).round().astype(int))
    return float(np.median([noise_level_map(a[z], patch)[1] for z in picks]))


def _quadratic(c: np.ndarray) -> np.ndarray:
    y, x = c[:, 0], c[:, 1]
    return np.stack([np.ones_like(y), y, x, y * y, x * x, y * x], axis=1)


def _tile_estimates(image: np.ndarray, src: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(centres (n, 2), wavelet sigma per tile) of the foreground tiles `noise_level` picks from
    whose median is above `BRIGHT_TILE` of the 99.5th percentile (in a magnitude image the noise
    of a dark tile reads lower than the sigma of the complex data: Rician) and whose finest scale
    holds noise rather than anatomy (`_scales` ratio <= `NOISE_TILE_RATIO`; at low noise anatomy
    inflates the estimate of textured tiles, which a uniform-noise scan would otherwise show as
    spread). None when fewer than `MIN_MAP_TILES` remain (no map: the noise is too low to map)."""
    if image.ndim != 2 or any(s < 2 * patch for s in image.shape):
        return None
    thr = foreground_threshold(image)
    grids = [np.arange(0, s - patch + 1, max(1, patch // 2)) for s in image.shape]
    starts = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, 2)
    centres = starts + patch // 2
    fg = image[tuple(centres.T)] > thr
    starts, centres = starts[fg], centres[fg]
    bright = BRIGHT_TILE * float(np.percentile(image, 99.5))
    if not len(starts):
        return None
    # every tile at once (one wavelet transform and one median over a stack: 4-5x faster than a
    # loop over ~50 tiles, which cost a lone 256x256 image as much as the network itself)
    view = np.lib.stride_tricks.sliding_window_view(image, (patch, patch))
    tiles = view[starts[:, 0], starts[:, 1]]
    bright_enough = np.median(tiles.reshape(len(tiles), -1), axis=1) > bright
    idx = np.flatnonzero(bright_enough)
    fine, ratio = _scales(tiles[idx])
    noise_like = ratio <= NOISE_TILE_RATIO
    kept = idx[noise_like]
    if len(kept) < MIN_MAP_TILES:
        return None
    if src is image:
        sig = fine[noise_like]
    else:  # the oracle: the same tiles, read on the noise
        sig = _finest_sigmas(np.lib.stride_tricks.sliding_window_view(src, (patch, patch))[starts[kept, 0], starts[kept, 1]])
    return centres[kept].astype(np.float64), np.asarray(sig, dtype=np.float64)


def _scales(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`wavelet_sigma` of each tile, its scale ratio) for a stack of tiles ``(n, h, w)``: the MAD
    of the second-finest db2 diagonal coefficients over the finest's (zeros excluded, as
    `wavelet_sigma` does). White noise spreads evenly over scales (0.8-0.95 on a 64-pixel tile of
    pure noise), anatomy has more energy at the coarser one (1.4 and up where it, not the noise,
    fills the finest scale); a tile without nonzero coefficients reads (0, inf). The finest level
    is `wavelet_sigma`'s own decomposition."""
    import pywt

    tiles = np.asarray(tiles, dtype=np.float64)
    if not len(tiles):
        return np.zeros(0), np.zeros(0)
    coeffs = pywt.wavedec2(tiles, "db2", level=2, axes=(-2, -1))
    fine, coarse = _median_nonzero(coeffs[2][2]), _median_nonzero(coeffs[1][2])
    empty = (fine == 0) | (coarse == 0)
    sigma = np.where(empty, 0.0, fine / 0.6744897501960817)
    ratio = np.where(empty, np.inf, coarse / np.maximum(fine, 1e-12))
    return sigma, ratio


def _median_nonzero(d: np.ndarray) -> np.ndarray:
    """Median of the absolute nonzero values of each ``d[i]`` (0 where none), as `wavelet_sigma` reads one band."""
    d = np.abs(d).reshape(len(d), -1)
    med = np.zeros(len(d))
    full = (d != 0).all(axis=1)  # the usual case: one vectorised median
    med[full] = np.median(d[full], axis=1)
    for i in np.flatnonzero(~full):
        nz = d[i][d[i] != 0]
        med[i] = np.median(nz) if nz.size else 0.0
    return med


def _finest_sigmas(tiles: np.ndarray) -> np.ndarray:
    """`wavelet_sigma` of each 2D tile of a stack ``(n, h, w)``, in one transform."""
    import pywt

    dd = pywt.dwtn(np.asarray(tiles, dtype=np.float64), "db2", axes=(-2, -1))["dd"]
    return _median_nonzero(dd) / 0.6744897501960817
