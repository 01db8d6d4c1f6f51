"""Clinical-fidelity measures for the benchmark: does a denoiser keep what a reader needs?

- `insert_lesion`: a small low-contrast disc (radius 3 voxels) added to a clean scan (so it was
  never in any training set); `lesion_contrast_kept` measures how much of its contrast survives.
- `insert_spheres`: several spherical lesions of given diameters (mm) and contrasts, spread over the
  middle slice's foreground, for the lesion probe across sizes (`scripts/lesion_probe.py`).
- `add_blobs`: the training-side counterpart (`TrainConfig.lesion_augment`): random small faint
  blobs added to a clean patch, so a network learns that such structures are signal.
- `periodic_pattern`: RMS of an image's 2-pixel-periodic components (the spectrum around the
  in-plane Nyquist frequencies), the structure a pixel-unshuffle network can add.
- `residual_correlation`: correlation of the residual (noisy - denoised) with the clean image
  inside the foreground (~0: no anatomy removed).
- `edge_rise_distance`: the 10-90% rise distance (mm) of the edge spread function at the clean
  image's strongest edges, averaged over many edge points so noise in single profiles cancels
  (from the dark plateau to the profile's maximum).
- `edge_gradient_ratio`: mean gradient magnitude at the clean image's top-1% edges relative to
  the clean image (< 1: blurred).

All functions take arrays and return numbers; no file I/O.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from denoise.metrics import foreground_mask

__all__ = ["add_blobs", "periodic_pattern", "insert_lesion", "insert_spheres", "paired_contrast_kept", "lesion_contrast_kept", "residual_correlation", "edge_rise_distance",
           "edge_gradient_ratio", "LESION_RADIUS"]

LESION_RADIUS = 3  # voxels
PROFILE_HALF = 6.0  # edge profile half-length, pixels
PROFILE_STEP = 0.25  # profile sampling step, pixels


def insert_lesion(array: np.ndarray, contrast: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Add a bright disc (radius `LESION_RADIUS`) inside the foreground near the centre of the
    middle slice. Returns the new array and (lesion mask, surrounding ring mask)."""
    fg = foreground_mask(array)
    z0 = array.shape[0] // 2 if array.ndim == 3 else None
    plane = fg[z0] if z0 is not None else fg
    inner = ndimage.binary_erosion(plane, iterations=4 * LESION_RADIUS)
    cand = np.argwhere(inner if inner.any() else plane)
    cy, cx = cand[len(cand) // 2] if len(cand) else (array.shape[-2] // 2, array.shape[-1] // 2)
    yy, xx = np.ogrid[: array.shape[-2], : array.shape[-1]]
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    disc = r2 <= LESION_RADIUS**2
    ring = (r2 > (LESION_RADIUS + 2) ** 2) & (r2 <= (2 * LESION_RADIUS + 2) ** 2)
    lesion = np.zeros(array.shape, bool)
    around = np.zeros(array.shape, bool)
    if z0 is not None:
        lesion[z0], around[z0] = disc, ring
    else:
        lesion, around = disc, ring
    out = array.copy()
    out[lesion] += contrast
    return out, (lesion, around)


def insert_spheres(array: np.ndarray, lesions: list[tuple[float, float]], spacing: tuple[float, float, float]
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Add spheres ``(diameter_mm, contrast)`` to a 3D ``array`` with voxel ``spacing`` (z, y, x mm),
    centred in its middle slice at points spread over a grid on the foreground, each far from the
    others and from the foreground's edge. Returns the new array and, per lesion, (lesion mask,
    ring mask) in the middle slice for `lesion_contrast_kept` (ring: from 2 to r + 2 pixels outside
    the lesion's edge, r its radius in pixels)."""
    z0 = array.shape[0] // 2
    dz, dy, dx = spacing
    radii = [d / 2 for d, _ in lesions]
    reach = int(np.ceil(2 * max(radii) / min(dy, dx))) + 3  # the largest ring, in pixels
    plane = foreground_mask(array)[z0]
    inner = ndimage.binary_erosion(plane, iterations=reach)
    cand = np.argwhere(inner if inner.any() else plane)
    n = int(np.ceil(np.sqrt(len(lesions))))
    (y0, x0), (y1, x1) = cand.min(axis=0), cand.max(axis=0)
    centres: list[np.ndarray] = []
    for i in range(n * n):
        target = np.array([y0 + (y1 - y0) * (i // n + 0.5) / n, x0 + (x1 - x0) * (i % n + 0.5) / n])
        pick = cand[np.argmin(((cand - target) ** 2).sum(axis=1))]
        if all(np.hypot(*(pick - c)) >= reach for c in centres):  # no lesion in another's ring
            centres.append(pick)
    if len(centres) < len(lesions):
        raise ValueError(f"room for {len(centres)} lesions {reach} pixels apart in the middle slice, {len(lesions)} asked")
    zz, yy, xx = np.ogrid[: array.shape[0], : array.shape[1], : array.shape[2]]
    out = array.astype(np.float32, copy=True)
    masks = []
    for (diameter, contrast), (cy, cx) in zip(lesions, centres):
        r = diameter / 2
        sphere = ((zz - z0) * dz) ** 2 + ((yy - cy) * dy) ** 2 + ((xx - cx) * dx) ** 2 <= r**2
        out[sphere] += contrast
        r_px = r / min(dy, dx)
        d2 = (yy[0] - cy) ** 2 + (xx[0] - cx) ** 2
        lesion = np.zeros(array.shape, bool)
        ring = np.zeros(array.shape, bool)
        lesion[z0] = sphere[z0]
        ring[z0] = (d2 > (r_px + 2) ** 2) & (d2 <= (2 * r_px + 2) ** 2)
        masks.append((lesion, ring))
    return out, masks


def paired_contrast_kept(with_lesion: np.ndarray, without: np.ndarray, lesion: np.ndarray, contrast: float) -> float:
    """Fraction of a lesion's contrast a denoiser kept, from two outputs for the same noise
    realisation, one with the lesion in the scan and one without: the mean of their difference over
    the lesion, divided by the contrast inserted. The noise cancels in the difference, so small faint
    lesions are measured far more precisely than against a surrounding ring; the noisy input itself
    keeps exactly 1."""
    return float(np.mean((with_lesion - without)[lesion]) / contrast)


def add_blobs(patch: np.ndarray, rng: np.random.Generator, *, centre: int | None = None,
              count: tuple[int, int] = (1, 3), radius: tuple[float, float] = (1.0, 4.0),
              contrast: tuple[float, float] = (0.02, 0.12)) -> np.ndarray:
    """A copy of ``patch`` (slices, H, W) with ``count`` random discs added: radius uniform in
    ``radius`` pixels (anti-aliased edge), contrast uniform in ``contrast`` with a random sign (on
    the normalised scale, where tissue is ~1), centred where the centre slice is above 10% of its
    maximum. Each disc spans the slice ``centre`` (default: the middle one) and 0-2 slices on each
    side, as small lesions span a few slices."""
    out = np.array(patch, dtype=np.float32, copy=True)
    n_slices, h, w = out.shape
    z0 = n_slices // 2 if centre is None else centre
    where = np.argwhere(out[z0] > 0.1 * max(float(out[z0].max()), 1e-6))
    if not len(where):
        return out
    yy, xx = np.ogrid[:h, :w]
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        cy, cx = where[rng.integers(len(where))]
        r = rng.uniform(*radius)
        amp = rng.uniform(*contrast) * rng.choice([-1.0, 1.0])
        disc = np.clip(r + 0.5 - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2), 0.0, 1.0).astype(np.float32)
        extent = int(rng.integers(0, 3))
        for z in range(max(0, z0 - extent), min(n_slices, z0 + extent + 1)):
            out[z] += amp * disc
    return out


def periodic_pattern(image: np.ndarray, halfwidth: float = 1 / 32, max_slices: int = 16) -> float:
    """RMS amplitude of the 2-pixel-periodic part of ``image`` (2D, or 3D as slices along the
    first axis; up to ``max_slices`` evenly spaced): the energy of each slice's 2D spectrum within
    ``halfwidth`` x size bins of the three Nyquist points ((-1)^y, (-1)^x and the (-1)^(y+x)
    checkerboard, each modulated by a smooth envelope), by Parseval as a mean square over pixels.
    Compare an output's value with its input's: a denoiser lowers it (noise has energy there); a
    grid artefact raises it."""
    slices = np.asarray(image).reshape(-1, *np.shape(image)[-2:])  # chosen before the float64 copy
    slices = slices[np.unique(np.linspace(0, len(slices) - 1, min(max_slices, len(slices))).round().astype(int))]
    slices = slices.astype(np.float64)
    h, w = slices.shape[-2:]

    def near_nyquist(n: int) -> np.ndarray:
        f = np.abs(np.fft.fftfreq(n))  # cycles per pixel; Nyquist is 0.5
        return f >= 0.5 - max(halfwidth, 1.0 / n)

    def near_zero(n: int) -> np.ndarray:
        return np.abs(np.fft.fftfreq(n)) <= max(halfwidth, 1.0 / n)

    ny, nx, zy, zx = near_nyquist(h), near_nyquist(w), near_zero(h), near_zero(w)
    window = (ny[:, None] & (nx | zx)[None, :]) | (zy[:, None] & nx[None, :])
    power = np.abs(np.fft.fft2(slices - slices.mean(axis=(-2, -1), keepdims=True))) ** 2
    return float(np.sqrt(power[:, window].sum(axis=-1).mean() / (h * w) ** 2))


def lesion_contrast_kept(original: np.ndarray, denoised: np.ndarray, masks: tuple[np.ndarray, np.ndarray],
                         contrast: float) -> float:
    """Fraction of the inserted contrast left in ``denoised`` (1 = all of it); the lesion-vs-ring
    difference that ``original`` (the scan before insertion) already had is subtracted."""
    les, ring = masks
    natural = original[les].mean() - original[ring].mean()
    return float((denoised[les].mean() - denoised[ring].mean() - natural) / contrast)


def residual_correlation(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray,
                         mask: np.ndarray | None = None) -> float:
    """Pearson correlation of ``noisy - denoised`` with ``clean`` (inside ``mask``)."""
    sel = mask if mask is not None else slice(None)
    res = (noisy - denoised)[sel].ravel().astype(np.float64)
    c = clean[sel].ravel().astype(np.float64)
    return float(np.corrcoef(res, c)[0, 1]) if res.std() > 0 and c.std() > 0 else 0.0


def edge_gradient_ratio(clean: np.ndarray, denoised: np.ndarray) -> float:
    """Mean gradient magnitude of ``denoised`` at the clean image's top-1% gradient voxels,
    relative to the clean image's (1 = as sharp, < 1 = blurred; noise also raises it)."""
    gc = np.linalg.norm(np.gradient(clean.astype(np.float64)), axis=0)
    gd = np.linalg.norm(np.gradient(denoised.astype(np.float64)), axis=0)
    edges = gc >= np.percentile(gc, 99)
    return float(gd[edges].mean() / max(gc[edges].mean(), 1e-12))


def edge_points(clean: np.ndarray, n: int = 64, min_distance: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` strongest, well-separated edge points of a 2D image inside its foreground and
    their unit gradient directions (pointing from dark to bright), both ``(k, 2)``."""
    from skimage.feature import canny

    img = ndimage.gaussian_filter(clean.astype(np.float64), 1.0)
    gy, gx = np.gradient(img)
    mag = np.hypot(gy, gx)
    border = int(PROFILE_HALF) + 2
    inside = np.zeros(mag.shape, bool)
    inside[border:-border, border:-border] = True
    # thin edges (non-maximum suppressed), strongest first, then greedily spaced apart
    edges = canny(clean.astype(np.float64), sigma=1.0) & inside & ndimage.binary_dilation(foreground_mask(clean), iterations=2)
    cand = np.argwhere(edges)
    cand = cand[np.argsort(-mag[tuple(cand.T)])][: 50 * n]
    chosen: list[np.ndarray] = []
    for c in cand:
        if all(np.abs(c - q).max() >= min_distance for q in chosen):
            chosen.append(c)
            if len(chosen) == n:
                break
    if not chosen:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pts = np.array(chosen)
    g = np.stack([gy[tuple(pts.T)], gx[tuple(pts.T)]], axis=1)
    return pts.astype(np.float64), g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def edge_rise_distance(image: np.ndarray, points: np.ndarray, directions: np.ndarray, pixel_mm: float = 1.0) -> float:
    """10-90% rise distance (mm) of the mean edge spread function of ``image`` sampled across
    ``points`` along ``directions`` (from `edge_points` of the *clean* image, so every method is
    measured at the same places). NaN when there are no edge points."""
    if len(points) == 0:
        return float("nan")
    t = np.arange(-PROFILE_HALF, PROFILE_HALF + PROFILE_STEP / 2, PROFILE_STEP)
    coords = points[:, :, None] + directions[:, :, None] * t[None, None, :]  # (k, 2, len(t))
    prof = ndimage.map_coordinates(image.astype(np.float64), coords.transpose(1, 0, 2).reshape(2, -1),
                                   order=1, mode="nearest").reshape(len(points), len(t))
    mean = prof.mean(axis=0)  # average first, normalise once: weak edges cannot blow up the mean
    # dark side plateau to the maximum (real "edges" are often thin bright structures, whose
    # profile peaks and falls again rather than levelling off like an ideal step)
    lo, hi = mean[:4].mean(), mean.max()
    if hi <= lo:
        return float("nan")
    esf = (mean - lo) / (hi - lo)
    return float((_crossing(esf, t, 0.9) - _crossing(esf, t, 0.1)) * pixel_mm)


def _crossing(esf: np.ndarray, t: np.ndarray, level: float) -> float:
    """Position where the (mostly rising) ESF first reaches ``level``, linearly interpolated."""
    above = np.nonzero(esf >= level)[0]
    if len(above) == 0:
        return float(t[-1])
    i = int(above[0])
    if i == 0:
        return float(t[0])
    f = (level - esf[i - 1]) / max(esf[i] - esf[i - 1], 1e-12)
    return float(t[i - 1] + f * (t[i] - t[i - 1]))
