"""Data for `denoise.adapt`: the user's noisy scans on a model's intensity scale, split into
training and validation, drawn as patch batches for Noise2Noise or blind-spot training.

Compute only (no file I/O): scans come in loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from denoise.noise_level import foreground_threshold, with_noise_channel
from denoise.normalize import Normalization
from denoise.realnoise import lag_correlation, noise_profile
from denoise.scan import Scan
from denoise.selfsup import radius_for_correlation, repeat_indices

__all__ = ["AdaptSource", "prepare_source", "conservative_sigma", "sure_noise", "split_sources", "PatchDraw", "MIN_SLICES", "MIN_EDGE"]

MIN_SLICES = 8  # slices of at least MIN_EDGE x MIN_EDGE pixels needed to learn anything
MIN_EDGE = 32


@dataclass
class AdaptSource:
    """One scan prepared for adaptation.

    Attributes:
        label: how logs name it (its relpath; never stored in a checkpoint).
        volumes: the model-scale volumes ``(z, y, x)``: the kept repeats (Noise2Noise) or one.
        raw: the first volume in the scan's own units (for before/after measures).
        pairs: whether ``volumes`` are repeats of one image (Noise2Noise pairs).
        note: why a 4D series was or was not used as repeats.
        lag1: the noise's lag-1 correlation between neighbouring pixels, where measurable (a repeat
            difference, or the background of a magnitude image), else None.
        modality, spacing: the scan's.
        sigma: the noise std on the model's scale: from the repeats' differences where there are
            repeats, else `conservative_sigma` (for recorruption, `denoise.selfsup.recorrupt`).
        scale: the model scale's unit in the scan's units (intensity = offset + scale x model value).
        noise_how: where ``sigma`` (and ``lag1``) came from, where a method says (`sure_noise`).
    """

    label: str
    volumes: list[np.ndarray]
    raw: np.ndarray
    pairs: bool
    modality: str
    spacing: tuple[float, ...] = ()
    note: str = ""
    lag1: float | None = None
    sigma: float = 0.0
    scale: float = 1.0
    noise_how: str = ""
    slices: int = field(init=False)

    def __post_init__(self) -> None:
        self.slices = int(self.volumes[0].shape[0])


def prepare_source(label: str, scan: Scan, normalization: Normalization, *, use_repeats: bool) -> AdaptSource:
    """A loaded scan on the model's scale. A 4D series becomes Noise2Noise repeats when
    ``use_repeats`` and `denoise.selfsup.repeat_indices` finds >= 2 still repeats of one image;
    otherwise each time point is a single noisy volume (only the first is kept for a series that
    is not a repeat set: its other time points are other images)."""
    arr = np.asarray(scan.array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    x_all, _, _, scale = normalization.to_model(arr)
    spacing = tuple(scan.spacing[-3:]) if scan.spacing is not None else ()

    def source(vols: list[np.ndarray], raw: np.ndarray, pairs: bool, note: str, lag1: float | None,
               sigma: float) -> AdaptSource:
        return AdaptSource(label, vols, raw, pairs, scan.modality, spacing, note, lag1, sigma, float(scale))

    if arr.ndim == 4:
        check = repeat_indices(arr)
        if check:
            vols = [x_all[t] for t in check.kept]
            diff = (arr[check.kept[1]] - arr[check.kept[0]]) / np.sqrt(2.0)
            fg = arr[check.kept].mean(axis=0) > foreground_threshold(arr[check.kept[0]])
            lag1 = float(np.nanmax([lag_correlation(diff, axis=a, mask=fg) for a in (-1, -2)]))
            note = f"{len(check.kept)} repeats of {len(arr)} time points" + (f"; {check.reason}" if check.reason else "")
            sigma = float(np.std((vols[1] - vols[0])[fg]) / np.sqrt(2.0))
            return source(vols, arr[check.kept[0]], use_repeats, note if use_repeats else note + " (used as single volumes)",
                          lag1, sigma)
        return source([x_all[0]], arr[0], False, f"4D but not repeats ({check.reason}): first time point only",
                      _background_lag1(arr[0], scan.modality), conservative_sigma(x_all[0]))
    return source([x_all], arr, False, "", _background_lag1(arr, scan.modality), conservative_sigma(x_all))


def conservative_sigma(volume: np.ndarray, *, tile: int = 16, quantile: float = 25.0) -> float:
    """Noise std of one volume from its flattest places: the ``quantile``-th percentile of the
    wavelet-MAD estimate (`denoise.noise_level.wavelet_sigma`) over foreground tiles of ``tile`` pixels
    from up to 16 slices. Anatomy inflates a tile's estimate and never lowers it, so a low quantile
    reads the noise where the anatomy is flat; correlated noise reads low too. Erring low is the
    safe side for recorruption (noise left in rather than anatomy smoothed)."""
    from denoise.noise_level import wavelet_sigma

    vol = np.asarray(volume, dtype=np.float32)
    thr = foreground_threshold(vol)
    values = []
    for sl in vol[:: max(1, len(vol) // 16)]:
        for y in range(0, sl.shape[0] - tile + 1, tile):
            for x in range(0, sl.shape[1] - tile + 1, tile):
                t = sl[y : y + tile, x : x + tile]
                if t[tile // 2, tile // 2] > thr:
                    values.append(wavelet_sigma(t))
    return float(np.percentile(values, quantile)) if values else float(wavelet_sigma(vol))


def sure_noise(source: AdaptSource, sigma_given: bool, corr_given: bool) -> None:
    """Set ``source.sigma`` / ``lag1`` for SURE (`denoise.gaintune`), which needs the noise level
    itself: unless given, an MR scan's air background (`denoise.gaintune.background_sigma`), else
    `conservative_sigma` (the flattest tiles: CT, masked MR; anatomy reads as noise in a plain
    wavelet estimate, +36% on a CT chest). The correlation is taken as 0 (white) unless given: a
    wrong correlation costs more than none (docs/design.md)."""
    from denoise.gaintune import background_sigma

    how = ["sigma given"] if sigma_given else []
    if not sigma_given:
        bg = background_sigma(source.raw) if source.modality.upper() != "CT" else None
        if bg is not None and bg > 0:
            source.sigma, how = bg / source.scale, ["sigma from the air background"]
        else:
            source.sigma, how = conservative_sigma(source.volumes[0]), ["sigma from the image's flattest tiles"]
    if not corr_given:
        source.lag1 = 0.0
        how.append("noise taken as white")
    source.noise_how = ", ".join(how)


def _background_lag1(volume: np.ndarray, modality: str) -> float | None:
    """The noise's lag-1 correlation from the background of one volume (`noise_profile`'s
    ``bg_lag1``). A magnitude's background correlation is about the square of the complex noise's,
    so MR gets its square root; None where there is no usable background (masked, defaced)."""
    bg = noise_profile(volume)["bg_lag1"]
    if not np.isfinite(bg):
        return None
    return float(np.sqrt(max(bg, 0.0))) if modality.upper() != "CT" else float(bg)


def blindspot_radius(sources: list[AdaptSource]) -> tuple[int, str]:
    """The blind-spot radius for these scans (`radius_for_correlation` of the largest measured
    lag-1 correlation) and how it was chosen."""
    known = [s.lag1 for s in sources if s.lag1 is not None and np.isfinite(s.lag1)]
    if not known:
        return radius_for_correlation(None), "noise correlation not measurable (no repeats, no background): radius 1"
    worst = max(known)
    return radius_for_correlation(worst), f"largest measured lag-1 noise correlation {worst:.2f}"


def split_sources(sources: list[AdaptSource], val_fraction: float, seed: int, *, depth: int
                  ) -> tuple[list[AdaptSource], list[AdaptSource], str]:
    """(training, validation, how): by scan when there are >= 2, else the last slices of the one
    scan (at least ``depth`` of them for 3D models, ``depth`` = 1 for 2D)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(sources) >= 2:
        order = np.random.default_rng(seed).permutation(len(sources))
        n_val = min(len(sources) - 1, max(1, round(val_fraction * len(sources))))
        val = [sources[i] for i in sorted(order[:n_val])]
        train = [sources[i] for i in sorted(order[n_val:])]
        return train, val, f"by scan: {len(train)} training, {len(val)} validation"
    s = sources[0]
    n_val = max(depth, round(s.slices * val_fraction))
    if s.slices - n_val < depth:
        raise ValueError(f"too little data to learn from: {s.slices} slices, at least {2 * depth} needed for a 3D model's "
                         "training and validation slabs")
    cut = s.slices - n_val

    def part(sl: slice) -> AdaptSource:
        return replace(s, volumes=[v[sl] for v in s.volumes], raw=s.raw[sl])

    return [part(slice(0, cut))], [part(slice(cut, None))], f"by slices: {cut} training, {n_val} validation (last)"


class PatchDraw:
    """Random patch batches from prepared sources, in a model's input layout.

    Args:
        sources: prepared scans (all Noise2Noise pairs, or all single volumes).
        spatial_dims, context, slab: the model's (2D models get ``2 context + 1`` slices as
            channels, edges repeated as at inference; 3D models ``depth`` slices as depth).
        patch: in-plane edge (clipped to the scans, a multiple of ``multiple``).
        depth: 3D patch depth.
        seed: seeds positions, repeat pairs and flips.
    """

    def __init__(self, sources: list[AdaptSource], *, spatial_dims: int, context: int, patch: int, depth: int,
                 multiple: int, seed: int) -> None:
        self.sources = sources
        self.spatial_dims, self.context, self.depth = spatial_dims, context, depth
        smallest = min(min(v.shape[1:]) for s in sources for v in s.volumes)
        self.patch = max(multiple, min(patch, smallest) // multiple * multiple)
        weights = np.array([s.slices * len(s.volumes) for s in sources], dtype=float)
        self.p = weights / weights.sum()
        self.thr = [foreground_threshold(s.volumes[0]) for s in sources]
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input ``(n, channels, *spatial)``, target ``(n, 1, *spatial)``, noise ``(n, 2)``: each
        patch's source's sigma and lag-1 correlation) float32; for single volumes the target is the
        input's own centre (blind spot or recorruption are applied later)."""
        pairs = [self._one() for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), np.array([p[2] for p in pairs], np.float32)

    def _one(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        rng = self.rng
        i = int(rng.choice(len(self.sources), p=self.p))
        s = self.sources[i]
        a = b = 0
        if s.pairs:
            a, b = (int(v) for v in rng.choice(len(s.volumes), size=2, replace=False))
        z_n, h, w = s.volumes[0].shape
        p = self.patch
        for _ in range(8):  # prefer patches whose centre is in the foreground
            z = int(rng.integers(0, z_n))
            y0, x0 = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
            if s.volumes[a][z, y0 + p // 2, x0 + p // 2] > self.thr[i]:
                break
        if self.spatial_dims == 2:
            idx = np.clip(np.arange(z - self.context, z + self.context + 1), 0, z_n - 1)
            inp = s.volumes[a][idx, y0 : y0 + p, x0 : x0 + p]
            tgt = s.volumes[b][z : z + 1, y0 : y0 + p, x0 : x0 + p]
        else:
            d = min(self.depth, z_n)
            z0 = int(rng.integers(0, z_n - d + 1))
            inp = s.volumes[a][None, z0 : z0 + d, y0 : y0 + p, x0 : x0 + p]
            tgt = s.volumes[b][None, z0 : z0 + d, y0 : y0 + p, x0 : x0 + p]
        k = int(rng.integers(0, 4))  # in-plane rotation and flip, the same for input and target
        inp, tgt = np.rot90(inp, k, axes=(-2, -1)), np.rot90(tgt, k, axes=(-2, -1))
        if rng.random() < 0.5:
            inp, tgt = inp[..., ::-1], tgt[..., ::-1]
        noise = (s.sigma, s.lag1 if s.lag1 is not None and np.isfinite(s.lag1) else 0.0)
        return np.ascontiguousarray(inp, dtype=np.float32), np.ascontiguousarray(tgt, dtype=np.float32), noise


def noise_map(inp: np.ndarray, patch: int | None, scale: float = 1.0) -> np.ndarray:
    """The noise-level channel a model with ``noise_channel`` gets for ``inp`` (estimated on the
    unmasked input, as at inference; ``scale``: the model's operating point): ``(n, 1, *spatial)``."""
    return with_noise_channel(inp, patch=patch, scale=scale)[:, -1:]
