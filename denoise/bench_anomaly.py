"""Anomaly maps measured on real lesions (issue #25 item 2): MS white-matter lesions on FLAIR and T2.

No expert lesion masks ship with these scans, so a reference is made from the FLAIR itself, by a
fixed rule checked by eye on overlays (`flair_lesion_mask`, docs/autoencoders.md shows them):

1. brain: voxels above 35% of the FLAIR's 99th percentile, eroded in-plane by 4 pixels (cuts the
   scalp from the brain at the dark skull), the largest 3D component, dilated back, holes filled;
2. region scored: the brain on the slices whose brain area is at least half the largest slice's,
   from the largest slice upward (supratentorial: the white matter where MS lesions sit; below it,
   orbits and the posterior fossa defeat the simple brain mask);
3. lesions: inside the brain eroded by 12 pixels (~9 mm: no cortex or scalp), voxels brighter than
   1.4 x their slice's white-matter level (the mode of the slice's brain histogram, which follows the
   coil's bias from slice to slice) and than 1.1 x the slice's 90th percentile (a FLAIR whose grey
   matter is bright had half its cortex marked without it), in 3D components of at least 4 voxels.
   A scan where this finds fewer than `MIN_LESION_VOXELS` is not scored (too few for the measures).

It is an approximate reference: it misses lesions in the cortex and next to it and marks a few
bright cortical voxels; and since it is a FLAIR intensity threshold, the FLAIR z-score baseline is
scored against its own rule there (circular). The T2 scans are scored against the same patient's
FLAIR mask carried into the T2's grid through both scans' affines (one session, no registration), so
no method is favoured there. Compute only; `scripts/anomaly_benchmark.py` reads the scans and writes
the tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["MIN_LESION_VOXELS", "brain_mask", "flair_lesion_mask", "carry_mask", "ANOMALY_METHODS", "anomaly_rows"]

# (label, model, score, polarity): the methods the benchmark scores; MS lesions are bright on FLAIR/T2
ANOMALY_METHODS = [("zscore", None, "zscore", "bright"), ("sparse-mr-2d", "sparse-mr-2d", "residual", "bright"),
                   ("vae-mr-2d", "vae-mr-2d", "residual", "bright"), ("vae-mr-2d:kl", "vae-mr-2d", "kl", "bright"),
                   ("cae-mr-2d", "cae-mr-2d", "residual", "bright"), ("dae:mr-2d", "mr-2d", "residual", "bright")]

MIN_LESION_VOXELS = 100
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


def brain_mask(flair: np.ndarray) -> np.ndarray:
    """The brain of a (z, y, x) FLAIR (or other head scan with a dark skull): step 1 above."""
    a = np.asarray(flair, dtype=np.float32)
    p99 = float(np.percentile(a[a > 0], 99)) if (a > 0).any() else 1.0
    m = ndimage.binary_erosion(a > 0.35 * p99, _IN_PLANE, iterations=4)
    lab, n = ndimage.label(m, ndimage.generate_binary_structure(3, 1))
    if n == 0:
        raise ValueError("no brain found: nothing above 35% of the 99th percentile")
    brain = lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1))))
    brain = ndimage.binary_dilation(brain, _IN_PLANE, iterations=4) & (a > 0)
    return np.stack([ndimage.binary_fill_holes(s) for s in brain])


def flair_lesion_mask(flair: np.ndarray, *, factor: float = 1.4, upper: float = 1.1, erosion: int = 12,
                      min_voxels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(lesions, region) of a (z, y, x) FLAIR by the rule in the module docstring."""
    a = np.asarray(flair, dtype=np.float32)
    brain = brain_mask(a)
    area = brain.reshape(len(a), -1).sum(1)
    top = int(np.argmax(area))
    keep = np.zeros(len(a), dtype=bool)
    for z in range(top, len(a)):  # from the largest slice upward, while the brain stays large
        if area[z] < 0.5 * area[top]:
            break
        keep[z] = True
    region = brain & keep[:, None, None]
    core = ndimage.binary_erosion(brain, _IN_PLANE, iterations=erosion) & region
    level = np.full(len(a), np.inf, dtype=np.float32)
    for z in np.flatnonzero(keep):
        v = a[z][brain[z]]
        counts, edges = np.histogram(v, bins=100)
        level[z] = max(factor * edges[int(np.argmax(counts))], upper * float(np.percentile(v, 90)))
    bright = core & (a > level[:, None, None])
    lab, n = ndimage.label(bright, ndimage.generate_binary_structure(3, 1))
    sizes = ndimage.sum(bright, lab, range(1, n + 1))
    lesions = np.isin(lab, 1 + np.flatnonzero(sizes >= min_voxels))
    return lesions, region


def carry_mask(mask: np.ndarray, affine_from: np.ndarray, shape_to: tuple[int, ...], affine_to: np.ndarray) -> np.ndarray:
    """A (z, y, x) mask moved into another scan's grid through the two affines (`Scan.affine`: voxel
    (x, y, z) -> world mm), trilinear on the mask's 0/1 values, kept where >= 0.5."""
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape_to), indexing="ij")
    to_world = np.asarray(affine_to, dtype=np.float64)
    world = to_world @ np.stack([xx.ravel(), yy.ravel(), zz.ravel(), np.ones(xx.size)])
    src = np.linalg.inv(np.asarray(affine_from, dtype=np.float64)) @ world
    coords = np.stack([src[2], src[1], src[0]])  # back to (z, y, x) array order
    vals = ndimage.map_coordinates(mask.astype(np.float32), coords, order=1, mode="constant", cval=0.0)
    return (vals >= 0.5).reshape(shape_to)


def anomaly_rows(scan: Any, lesions: np.ndarray, region: np.ndarray, models: dict[str, Any], *,
                 methods: list[tuple] = ANOMALY_METHODS, label: str = "") -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """One row per method (AUROC, AUPRC, best Dice, seconds) of its `anomaly_map` of ``scan``
    against ``lesions`` inside ``region``, and the maps by method label. ``models``: loaded models
    by name."""
    import time

    from denoise.anomaly import anomaly_map, anomaly_measures

    rows, maps = [], {}
    for name, model, score, polarity in methods:
        t0 = time.perf_counter()
        amap = anomaly_map(scan.array, models.get(model) if model else None, score=score, polarity=polarity,
                           modality=scan.modality, spacing=scan.spacing)
        seconds = time.perf_counter() - t0
        rows.append({"scan": label, "method": name, "score": score, **anomaly_measures(amap, lesions, region),
                     "seconds": round(seconds, 2)})
        maps[name] = amap
    return rows, maps
