"""Training patches from clean volumes, corrupted on the fly; opens no files.

Patches are drawn around foreground voxels (so empty background does not dominate), augmented
with MONAI random flips and 90-degree rotations, then corrupted with a noise spec. Low-dose CT
noise is too slow to simulate per patch, so `precompute_lowdose_noise` makes a full-dose noise
field per slice once (the real sinogram simulation) and patches scale it by ``1/sqrt(dose)``
(Poisson noise variance is inversely proportional to dose).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import Compose, RandFlipd, RandHistogramShift, RandRotate90d, RandScaleIntensity

from denoise.fidelity import add_blobs
from denoise.noise import NoiseSpec, add_noise, check_training_options, parse_noise
from denoise.noise_level import foreground_threshold, with_noise_channel
from denoise.noise_mr import acquired_coarser, reconstructed

BLUR_FILTERS = ("none", "hamming", "fermi")  # `blur_augment`'s apodisations

__all__ = ["PatchSampler", "patch_batches", "precompute_lowdose_noise", "noise_weights"]

# 2.5D models: share of training stacks whose neighbours are copies of the noisy centre slice, the
# input a lone 2D image (or the edge of a volume, where neighbours are repeated) gives at inference.
SINGLE_SLICE_PROB = 0.1


def precompute_lowdose_noise(volume_hu: np.ndarray, *, pixel_mm: float, seed: int, window: float = 2000.0) -> np.ndarray:
    """Full-dose low-dose-CT noise for every slice of a HU volume, on the normalised scale."""
    full = add_noise(volume_hu, "lowdose:1", seed=seed, pixel_mm=pixel_mm)
    return ((full - volume_hu) / window).astype(np.float32)


class NumpyHistogramShift(RandHistogramShift):
    """MONAI's `RandHistogramShift` (same random control points, same random stream) applied to
    numpy arrays with ``np.interp``, MONAI's own ndarray path: its ``__call__`` converts the input
    to a tensor first and takes the torch path, which is no faster and slower when other work
    holds the cores (`python scripts/bench_train_step.py histogram`)."""

    def __call__(self, img, randomize: bool = True):  # type: ignore[override]
        if not isinstance(img, np.ndarray):
            return super().__call__(img, randomize)
        if randomize:
            self.randomize()
        lo, hi = float(img.min()), float(img.max())
        if not self._do_transform or lo == hi:
            return img
        span = hi - lo
        out = self.interp(img, self.reference_control_points * span + lo, self.floating_control_points * span + lo)
        return np.asarray(out, dtype=img.dtype)


class PatchSampler:
    """Draws (noisy, clean) patch batches from normalised clean volumes.

    Args:
        volumes: normalised clean arrays, each ``(z, y, x)`` (2D images as ``(1, y, x)``).
        noise: spec; ``lowdose`` needs ``noise_fields`` (same shapes as volumes).
        spatial_dims: 2 samples ``patch_size^2`` slices, 3 samples ``patch_size^3`` blocks
            (``patch_depth x patch_size^2`` with ``patch_depth``; such blocks rotate in-plane only).
        patch_size: edge length (clipped to the volume size).
        seed: seeds everything (patch positions, augmentation, noise).
        foreground_fraction: share of patches centred on foreground voxels; the rest are centred
            anywhere in the volume.
        all_axes: 2D only: slice each patch along a random one of the three volume axes, not
            only the first (three times the anatomy seen edge-on; for isotropic volumes).
        contrast_augment: probability of each of two MONAI intensity transforms on the clean
            patch before the noise is added: a random monotone piecewise-linear remapping of its
            intensities between its own minimum and maximum (`RandHistogramShift`, new tissue
            contrasts from few subjects) and a darkening by a factor 0.5-1 (`RandScaleIntensity`:
            anatomy dimmer than the scan's robust maximum, as brain beside bright scalp fat).
            The noise level stays relative to the unscaled maximum. Not for ``lowdose`` noise,
            whose precomputed fields belong to the unaltered attenuation.
        coarse_augment: probability that a patch is cut at twice the size in-plane and
            block-averaged 2x2 before the noise: anatomy at twice the pixel size (EPI, DWI and
            clinical 2D scans have 2-4 mm pixels; the training volumes have 1 mm). Not for
            ``lowdose`` noise either.
        coarse_max: largest coarse factor: a coarse patch is cut at f times the size and
            block-averaged f x f, f drawn from 2..``coarse_max`` (2: always 2, no extra draw).
        coarse_kspace: probability that a coarse patch is cut from k-space instead of block-averaged
            (`denoise.noise_mr.acquired_coarser`: sinc blur and Gibbs ringing as a coarser matrix
            acquires them; no extra draw when 0).
        blur_augment: probability that a clean patch is blurred as a zero-filling (1-2x) and
            apodising (`BLUR_FILTERS`) reconstruction blurs it (`denoise.noise_mr.reconstructed`), in
            input and target alike: smooth anatomy at the pixel scale, as interpolated EPI stores it.
        fine_augment: probability that a patch is cut at half the size in-plane and upsampled
            2x (bicubic, clipped to the cut's range) before the noise: anatomy that is smooth over
            several pixels, as in finely sampled or zero-fill interpolated series (e.g. a 640
            matrix at 0.625 mm). Not for ``lowdose`` noise.
        thick_augment: probability that a patch's slices (3D depth, or a 2.5D stack's neighbours)
            are taken 2 or 3 slices apart: the through-plane spacing of clinical series with
            thick or gapped slices, which isotropic training volumes never show.
        lesion_augment: probability that a patch gets small faint blobs before the noise, in
            input and target alike (`denoise.fidelity.add_blobs`; `TrainConfig.lesion_augment`).
        lesion_weight: > 0: `batch` also returns a per-pixel loss weight, 1 + ``lesion_weight``
            where blobs were added to the target, 1 elsewhere (`TrainConfig.lesion_weight`).
        noise_weighting: > 0: `batch` also returns the loss weight, times `noise_weights` of each
            patch (`TrainConfig.noise_weighting`).
        reference_noise: ``lowdose`` only: the target keeps full-dose noise of its own, with a
            std drawn per patch uniformly in [0, reference_noise] (normalised scale; CT: a
            fraction of the 2000-HU window, 0.01 = 20 HU), and the dose's noise is added on top.
            This is low-dose -> full-dose restoration as benchmarks of real CT pose it (the
            reference is itself a noisy full-dose scan). The kept noise is the same volume's
            noise field from another slice (an independent draw of the same physics), scaled.
    """

    def __init__(self, volumes: list[np.ndarray], *, noise: str | NoiseSpec, spatial_dims: int, patch_size: int,
                 seed: int = 0, noise_fields: list[np.ndarray] | None = None, context: int = 0,
                 noise_channel: bool = False, foreground_fraction: float = 1.0, all_axes: bool = False,
                 contrast_augment: float = 0.0, coarse_augment: float = 0.0, coarse_max: int = 2,
                 coarse_kspace: float = 0.0, blur_augment: float = 0.0,
                 fine_augment: float = 0.0, patch_depth: int = 0, thick_augment: float = 0.0,
                 reference_noise: float = 0.0, lesion_augment: float = 0.0, lesion_weight: float = 0.0,
                 noise_weighting: float = 0.0) -> None:
        if not volumes:
            raise ValueError("PatchSampler needs at least one volume")
        self.volumes = [v if v.ndim == 3 else v[None] for v in volumes]
        self.noise = parse_noise(noise)
        if self.noise.kind == "lowdose" and noise_fields is None:
            raise ValueError("lowdose training needs precomputed noise_fields (see precompute_lowdose_noise)")
        self.noise_fields = noise_fields
        check_training_options(self.noise, reference_noise=reference_noise, contrast_augment=contrast_augment,
                               coarse_augment=coarse_augment, coarse_max=coarse_max, coarse_kspace=coarse_kspace,
                               blur_augment=blur_augment, fine_augment=fine_augment,
                               lesion_augment=lesion_augment, lesion_weight=lesion_weight)
        self.reference_noise = reference_noise
        self._field_std = [float(np.std(f)) or 1.0 for f in noise_fields] if reference_noise else None
        self.spatial_dims = spatial_dims
        self.patch_size = patch_size
        self.patch_depth = patch_depth or patch_size
        self.context = context if spatial_dims == 2 else 0
        self.noise_channel = noise_channel
        self.foreground_fraction = foreground_fraction
        self.all_axes = all_axes and spatial_dims == 2
        # 3D patches that are not cubes (patch_depth) rotate in-plane only
        axes = [(0, 1)] if spatial_dims == 2 else [(1, 2)] if self.patch_depth != patch_size else [(0, 1), (1, 2), (0, 2)]
        keys = ["clean", "field"]
        self.augment = Compose([RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(spatial_dims)]
                               + [RandRotate90d(keys, prob=0.5, spatial_axes=ax) for ax in axes])
        self.coarse_augment = coarse_augment
        self.coarse_max = int(coarse_max)
        self.coarse_kspace = coarse_kspace
        self.blur_augment = blur_augment
        self.fine_augment = fine_augment
        self.thick_augment = thick_augment
        self.lesion_augment = lesion_augment
        self.lesion_weight = lesion_weight
        self.noise_weighting = float(noise_weighting)
        self.contrast = (Compose([NumpyHistogramShift(num_control_points=(4, 8), prob=contrast_augment),
                                  RandScaleIntensity(factors=(-0.5, 0.0), prob=contrast_augment)])
                         if contrast_augment else None)
        self.reseed(seed)
        self._centers = [self._foreground(v) for v in self.volumes]
        weights = np.array([len(c) for c in self._centers], dtype=float)
        self._vol_p = weights / weights.sum()

    def batch(self, n: int) -> tuple[np.ndarray, ...]:
        """(noisy, clean): noisy ``(n, 1 + 2 context, *patch)``, clean ``(n, 1, *patch)``, float32;
        with ``lesion_weight`` or ``noise_weighting`` also the clean-shaped loss weight (1 +
        lesion_weight on inserted blobs, times each patch's `noise_weights`).

        With ``context`` (2D only) the noisy input holds the neighbouring slices as channels,
        each with its own noise, and the target is the clean centre slice; in a share
        ``SINGLE_SLICE_PROB`` of stacks every channel is the noisy centre slice (a lone image).
        """
        track = get_track_meta()
        set_track_meta(False)  # plain tensors: MONAI's metadata bookkeeping was a third of the time
        try:
            pairs = [self._one() for _ in range(n)]
        finally:
            set_track_meta(track)
        noisy = np.stack([p[0] for p in pairs])
        clean = np.stack([p[1] for p in pairs])
        if noisy.ndim == clean.ndim:
            noisy = noisy[:, None]
        weight = self._loss_weight(pairs, noisy, clean) if (self.lesion_weight or self.noise_weighting) else None
        if self.noise_channel:
            noisy = with_noise_channel(noisy)
        out = (noisy.astype(np.float32), clean[:, None].astype(np.float32))
        return out if weight is None else (*out, weight)

    def _loss_weight(self, pairs: list, noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
        """The clean-shaped loss weight of a batch: 1 + ``lesion_weight`` on inserted blobs, times
        each patch's `noise_weights` (the noisy centre slice against its target)."""
        weight = np.ones((len(clean), 1, *clean.shape[1:]), dtype=np.float32)
        if self.lesion_weight:
            blobs = np.stack([p[2] if p[2] is not None else np.zeros_like(p[1], dtype=bool) for p in pairs])
            weight += self.lesion_weight * blobs[:, None].astype(np.float32)
        if self.noise_weighting:
            per = noise_weights(noisy[:, self.context], clean, self.noise_weighting)
            weight *= per.reshape(-1, *([1] * (weight.ndim - 1))).astype(np.float32)
        return weight

    def reseed(self, seed: int) -> None:
        """Restart every random stream of the sampler (patch choice, noise, augmentations) from ``seed``."""
        self.rng = np.random.default_rng(seed)
        self.augment.set_random_state(seed=seed)
        if self.contrast is not None:
            self.contrast.set_random_state(seed=seed + 1)

    def _one(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(noisy, target, where blobs were added to the target or None): a window cut from a
        volume, augmented, then corrupted (in this order, which fixes the random stream)."""
        clean, field = self._cut()
        clean, field, blobs = self._augment(clean, field)
        noisy, target = self._corrupt(clean, field)
        return noisy, target, blobs

    def _cut(self) -> tuple[np.ndarray, np.ndarray]:
        """A clean window (``(slices, H, W)``; 3D ``(1, D, H, W)``) and its lowdose noise field
        (zeros otherwise), at the drawn pixel scale and slice step, padded to the patch size."""
        i = int(self.rng.choice(len(self.volumes), p=self._vol_p))
        vol = self.volumes[i]
        if self.rng.random() < self.foreground_fraction:
            c = self._centers[i][self.rng.integers(len(self._centers[i]))]
        else:  # anywhere (air, edges of the body, table: what a foreground-only sampler never shows)
            c = np.array([self.rng.integers(s) for s in vol.shape])
        field_vol = self.noise_fields[i] if self.noise_fields is not None else None
        if self.all_axes:  # slice along a random axis: move it first (a view, no copy)
            a = int(self.rng.integers(3))
            vol, c = np.moveaxis(vol, a, 0), np.concatenate([c[a:a + 1], np.delete(c, a)])
            field_vol = np.moveaxis(field_vol, a, 0) if field_vol is not None else None
        # in-plane size of the cut relative to the patch: 2 (coarse), 0.5 (fine) or 1; no random draw
        # when an option is off, so existing recipes keep their sample stream
        scale = 1.0
        if self.coarse_augment and self.rng.random() < self.coarse_augment:
            scale = 2.0 if self.coarse_max == 2 else float(self.rng.integers(2, self.coarse_max + 1))
        elif self.fine_augment and self.rng.random() < self.fine_augment:
            scale = 0.5
        # slices 2 or 3 apart: thick or gapped clinical slices (no random draw when the option is off)
        step = 1
        if self.thick_augment and self.rng.random() < self.thick_augment:
            step = int(self.rng.integers(2, 4))
        sl = self._window(vol.shape, c, scale, step)
        if self.context:
            zs = np.clip(sl[0].start + step * np.arange(-self.context, self.context + 1), 0, vol.shape[0] - 1)
            sl = (zs, *sl[1:])
        clean = vol[sl]
        field = field_vol[sl] if field_vol is not None else np.zeros_like(clean)
        if self.reference_noise:  # the target is a noisy full-dose image; the dose's noise goes on top
            clean = clean + self._reference_noise(i, field_vol, sl)
        if self.spatial_dims == 3:
            clean, field = clean[None], field[None]
        clean, field = self._pad(clean, scale), self._pad(field, scale)
        if scale > 1:  # block-average in-plane, or cut from k-space: the same anatomy at f times the pixel size
            f = int(scale)
            if self.coarse_kspace and self.rng.random() < self.coarse_kspace:  # no draw when off
                clean = acquired_coarser(clean, f)
            else:
                clean = clean.reshape(*clean.shape[:-2], clean.shape[-2] // f, f, clean.shape[-1] // f, f).mean(axis=(-3, -1))
            field = field[..., ::f, ::f]
        elif scale < 1:  # upsample in-plane: the same anatomy at half the pixel size
            clean = _upsample2(clean)
            field = np.zeros_like(clean)
        if self.blur_augment and self.rng.random() < self.blur_augment:  # no draw when off
            zf, filt = float(self.rng.uniform(1.0, 2.0)), BLUR_FILTERS[int(self.rng.integers(len(BLUR_FILTERS)))]
            clean = reconstructed(clean, zf, filt)
        return clean, field

    def _augment(self, clean: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Flips and rotations (of the window and its field alike), the intensity remapping and the
        faint blobs; returns where blobs went into the target when ``lesion_weight`` is set."""
        out = self.augment({"clean": clean.copy(), "field": field.copy()})
        clean = np.asarray(out["clean"])
        field = np.asarray(out["field"])
        if self.contrast is not None and clean.max() > clean.min():
            clean = np.asarray(self.contrast(clean), dtype=np.float32)
        blobs = None
        if self.lesion_augment and self.rng.random() < self.lesion_augment:  # no draw when off
            stack = clean if self.spatial_dims == 2 else clean[0]  # (slices, H, W)
            with_blobs = add_blobs(stack, self.rng, centre=self.context if self.context else None)
            if self.lesion_weight:
                changed = with_blobs != stack.astype(np.float32)  # add_blobs works in float32
                blobs = changed[self.context] if self.context else (changed[0] if self.spatial_dims == 2 else changed)
            clean = with_blobs if self.spatial_dims == 2 else with_blobs[None]
        return clean, field, blobs

    def _corrupt(self, clean: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(noisy input, clean target): the noise added (lowdose: the field at a drawn dose), and a
        share of 2.5D stacks made of the noisy centre slice alone."""
        if not self.context:
            clean, field = clean[0], field[0]
        if self.noise.kind == "lowdose":
            dose = self.noise.draw(self.rng)
            noisy = clean + field / np.sqrt(dose)
        else:
            noisy = add_noise(clean, self.noise, seed=self.rng, reference=1.0)
        if self.context and self.rng.random() < SINGLE_SLICE_PROB:
            noisy = np.repeat(noisy[self.context : self.context + 1], len(noisy), axis=0)
        return noisy, (clean[self.context] if self.context else clean)

    def _reference_noise(self, i: int, field_vol: np.ndarray, sl: tuple) -> np.ndarray:
        """Full-dose noise for the target: the window's field taken ``k != 0`` slices away
        (cyclically; so independent of the field the input gets at every voxel), or rolled by
        half the slice in-plane for single-slice volumes, scaled to a std drawn in
        [0, reference_noise]."""
        std = self.rng.uniform(0.0, self.reference_noise) / self._field_std[i]
        n = field_vol.shape[0]
        if n == 1:
            other = np.roll(field_vol, (field_vol.shape[1] // 2, field_vol.shape[2] // 2), axis=(1, 2))[sl]
        else:
            z = np.arange(n)[sl[0]]
            other = field_vol[((z + int(self.rng.integers(1, n))) % n, *sl[1:])]
        return (other * std).astype(np.float32)

    def _pad(self, a: np.ndarray, scale: float = 1.0) -> np.ndarray:
        target = [self.patch_depth] * (a.ndim - 3) + [int(self.patch_size * scale)] * 2  # (c, [z,] y, x)
        pads = [(0, 0)] + [(0, max(0, t - s)) for t, s in zip(target, a.shape[1:])]
        return np.pad(a, pads, mode="reflect" if all(s > 1 for s in a.shape[1:]) else "edge") if any(p[1] for p in pads) else a

    def _window(self, shape: tuple[int, ...], center: np.ndarray, scale: float = 1.0, step: int = 1) -> tuple[slice, ...]:
        q = int(self.patch_size * scale)
        sizes = [1 if self.spatial_dims == 2 else min(self.patch_depth * step, shape[0]), min(q, shape[1]), min(q, shape[2])]
        sl = []
        for c, s, dim in zip(center, sizes, shape):
            start = int(np.clip(c - s // 2, 0, dim - s))
            sl.append(slice(start, start + s))
        sl[0] = slice(sl[0].start, sl[0].stop, step)
        return tuple(sl)

    def _foreground(self, vol: np.ndarray) -> np.ndarray:
        idx = np.argwhere(vol > foreground_threshold(vol))
        if len(idx) == 0:
            idx = np.argwhere(np.ones_like(vol, dtype=bool))
        step = max(1, len(idx) // 20000)
        return idx[:: step]


class _Batches(torch.utils.data.IterableDataset):
    """An endless stream of training batches; each DataLoader worker reseeds its copy of the
    sampler (``seed`` + its id), so workers never repeat one another's patches."""

    def __init__(self, sampler: PatchSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            self.sampler.reseed(self.seed + 7919 * (info.id + 1))
        while True:
            yield tuple(torch.from_numpy(a) for a in self.sampler.batch(self.batch_size))


def patch_batches(sampler: PatchSampler, batch_size: int, *, num_workers: int = 0, seed: int = 0,
                  pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless (noisy, clean) tensor batches from ``sampler`` (with its loss weight, if it makes one).

    ``num_workers=0`` draws them in this process, in the sampler's own seeded order. With workers
    (a torch DataLoader; what keeps a GPU busy, since sampling runs on the CPU) each worker
    draws whole batches from its own reseeded copy and the loader takes them in turn, so the
    stream is reproducible for a given ``seed`` and number of workers, though not the same
    stream as without workers."""
    data = _Batches(sampler, batch_size, seed)
    if num_workers == 0:
        return iter(data)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                                         persistent_workers=True, prefetch_factor=4)
    return iter(loader)


NOISE_WEIGHT_REF, NOISE_WEIGHT_FLOOR = 0.05, 0.005  # `noise_weights`: the level weighing 1, the lowest level counted


def noise_weights(noisy: np.ndarray, clean: np.ndarray, power: float) -> np.ndarray:
    """Per-patch loss weights ``(NOISE_WEIGHT_REF / max(sigma, NOISE_WEIGHT_FLOOR)) ** power`` for a
    batch of noisy patches and their clean targets (same shape ``(n, *patch)``, normalised scale):
    sigma is the RMS of noisy - clean over the patch's tissue (clean above 5% of the scale; the
    whole patch when it holds fewer than 64 such pixels), the noise that was added. With power 2
    every patch's error counts relative to its own noise power (`TrainConfig.noise_weighting`)."""
    diff = (np.asarray(noisy, np.float64) - np.asarray(clean, np.float64)).reshape(len(noisy), -1)
    tissue = np.asarray(clean).reshape(len(clean), -1) > 0.05
    enough = tissue.sum(axis=1) >= 64
    sel = np.where(enough[:, None], tissue, True)
    sigma = np.sqrt((diff**2 * sel).sum(axis=1) / sel.sum(axis=1))
    return (NOISE_WEIGHT_REF / np.maximum(sigma, NOISE_WEIGHT_FLOOR)) ** float(power)


def _upsample2(a: np.ndarray) -> np.ndarray:
    """2x bicubic upsampling of the last two axes, clipped to the input's range (no overshoot
    below zero magnitude)."""
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    flat = t.reshape(-1, 1, *t.shape[-2:])
    up = F.interpolate(flat, scale_factor=2, mode="bicubic", align_corners=False)
    up = up.reshape(*t.shape[:-2], t.shape[-2] * 2, t.shape[-1] * 2)
    return np.clip(up.numpy(), float(a.min()), float(a.max()))
