"""Side-by-side comparison logic for the viewer (no streamlit): difference maps in a diverging colour
map centred at 0, their colour bars in the scan's units, and how metrics are ranked and charted."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

__all__ = ["scan_units", "nice_limit", "symmetric_limit", "diverging_rgb", "sequential_rgb", "colorbar_png", "difference_slices",
           "zoom_center", "metric_direction", "best_methods", "chart_points", "DIVERGING_CMAP",
           "SEQUENTIAL_CMAP"]

DIVERGING_CMAP = "RdBu_r"  # blue (negative) - white (0) - red (positive)
SEQUENTIAL_CMAP = "magma"  # black (0) - yellow (high): uncertainty maps
_NICE = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def scan_units(modality: str) -> str:
    """The unit of a scan's values: Hounsfield units for CT, arbitrary units for MR and others."""
    return "HU" if modality == "CT" else "a.u."


def nice_limit(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k that is >= ``value`` (> 0): colour bar
    ends that read as round numbers."""
    if not np.isfinite(value) or value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in _NICE:
        candidate = step * 10.0**exp
        if candidate >= value * (1 - 1e-9):
            return float(f"{candidate:.6g}")
    return float(10.0 ** (exp + 1))


def symmetric_limit(images: list[np.ndarray], percentile: float = 99.0) -> float:
    """One colour limit L for a set of difference images, so that all of them share the scale
    [-L, L] and can be compared: the ``percentile`` of |values| over all of them (robust to a few
    extreme voxels), rounded up with `nice_limit`. Never 0."""
    vals = [np.abs(np.asarray(im, dtype=np.float64)).ravel() for im in images if np.size(im)]
    if not vals:
        return 1.0
    flat = np.concatenate(vals)
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return 1.0
    raw = float(np.percentile(flat, percentile))
    if raw <= 0:
        raw = float(flat.max())
    return nice_limit(raw) if raw > 0 else 1.0


def diverging_rgb(image: np.ndarray, limit: float, cmap: str = DIVERGING_CMAP) -> np.ndarray:
    """``image`` (signed, in the scan's units) as uint8 RGB ``(h, w, 3)``: 0 is the colour map's
    centre (white), +limit and above its positive end (red), -limit and below its negative end
    (blue). NaNs show as 0."""
    from matplotlib import colormaps

    limit = float(limit) if limit and np.isfinite(limit) and limit > 0 else 1.0
    t = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)) / (2 * limit) + 0.5, 0.0, 1.0)
    rgba = colormaps[cmap](t)
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def sequential_rgb(image: np.ndarray, limit: float, cmap: str = SEQUENTIAL_CMAP) -> np.ndarray:
    """A non-negative ``image`` (an uncertainty map, in the scan's units) as uint8 RGB ``(h, w, 3)``:
    0 the colour map's dark end, ``limit`` and above its bright end. NaNs show as 0."""
    from matplotlib import colormaps

    limit = float(limit) if limit and np.isfinite(limit) and limit > 0 else 1.0
    t = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)) / limit, 0.0, 1.0)
    return (colormaps[cmap](t)[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay_rgb(gray: np.ndarray, heat: np.ndarray, limit: float, cmap: str = SEQUENTIAL_CMAP, alpha: float = 0.7) -> np.ndarray:
    """A non-negative map ``heat`` laid over a uint8 grey image as uint8 RGB ``(h, w, 3)``: each pixel
    mixes in the map's colour with opacity ``alpha * heat / limit`` (clipped to [0, alpha]), so
    where the map is 0 the image shows unchanged and at ``limit`` and above the colour dominates."""
    rgb = np.repeat(np.asarray(gray, dtype=np.float64)[..., None], 3, axis=-1)
    limit = float(limit) if limit and np.isfinite(limit) and limit > 0 else 1.0
    a = alpha * np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)) / limit, 0.0, 1.0)[..., None]
    return (rgb * (1 - a) + sequential_rgb(heat, limit, cmap) * a + 0.5).astype(np.uint8)


def colorbar_png(limit: float, units: str, title: str, cmap: str = DIVERGING_CMAP, *, signed: bool = True) -> bytes:
    """A vertical colour bar from -``limit`` (0 when not ``signed``) to +``limit`` labelled
    ``"title (units)"`` as PNG bytes, sized to stand beside the maps in a column of its own."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6, 3.2), dpi=100)
    ax = fig.add_axes((0.12, 0.05, 0.16, 0.9))
    low = -limit if signed else 0.0
    bar = fig.colorbar(ScalarMappable(norm=Normalize(low, limit), cmap=cmap), cax=ax, orientation="vertical")
    ticks = [-limit, -limit / 2, 0.0, limit / 2, limit] if signed else [0.0, limit / 4, limit / 2, 3 * limit / 4, limit]
    bar.set_ticks(ticks)
    bar.set_ticklabels([(f"{v:+.3g}" if signed else f"{v:.3g}") if v else "0" for v in ticks], fontsize=10)
    bar.set_label(f"{title} ({units})", fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def difference_slices(noisy: np.ndarray, results: dict[str, np.ndarray],
                      clean: np.ndarray | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(residuals, errors) of 2D slices: residual = noisy - denoised for every method; error =
    denoised - clean for every method, with ``"noisy"`` first (noisy - clean: the noise itself) when
    a clean slice exists, else no errors."""
    noisy = np.asarray(noisy, dtype=np.float32)
    residuals = {m: noisy - np.asarray(r, dtype=np.float32) for m, r in results.items()}
    errors: dict[str, np.ndarray] = {}
    if clean is not None:
        c = np.asarray(clean, dtype=np.float32)
        errors["noisy"] = noisy - c
        errors.update({m: np.asarray(r, dtype=np.float32) - c for m, r in results.items()})
    return residuals, errors


def zoom_center(img: np.ndarray, factor: float, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """1/``factor`` of a grey ``(h, w)`` or colour ``(h, w, c)`` image around ``centre`` (fractions
    of the height and width; the window stays inside the image: panning), enlarged back by pixel
    repetition (integer part of ``factor``)."""
    if factor <= 1:
        return img
    h, w = img.shape[:2]
    ch, cw = max(int(h / factor), 1), max(int(w / factor), 1)
    y0 = int(np.clip(round(centre[0] * h - ch / 2), 0, h - ch))
    x0 = int(np.clip(round(centre[1] * w - cw / 2), 0, w - cw))
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    k = int(factor)
    return np.repeat(np.repeat(crop, k, axis=0), k, axis=1)


def metric_direction(column: str) -> str | None:
    """``"higher"`` when a larger value of the metric column is better (PSNR, SSIM), ``"lower"`` when a
    smaller one is (noise estimates, errors), None for columns that are not scores (runtime, data range)."""
    name = column.lower()
    if "psnr" in name or "ssim" in name:
        return "higher"
    if "noise" in name or "rmse" in name or "error" in name:
        return "lower"
    return None


def best_methods(rows: list[dict[str, Any]], column: str) -> set[str]:
    """The methods (rows' ``"method"``) with the best value of ``column`` by `metric_direction`; ties
    all count; empty for non-score columns or when no row has a finite value."""
    direction = metric_direction(column)
    vals = {r["method"]: float(r[column]) for r in rows
            if column in r and r[column] is not None and np.isfinite(float(r[column]))}
    if direction is None or not vals:
        return set()
    best = max(vals.values()) if direction == "higher" else min(vals.values())
    return {m for m, v in vals.items() if v == best}


def chart_points(rows: list[dict[str, Any]], column: str) -> tuple[list[tuple[str, float]], tuple[float, float]]:
    """(points, domain) for a chart of ``column``: ``(method, value)`` ordered best first (by
    `metric_direction`), and an axis domain that spans the values with a margin instead of starting
    at 0, so that differences of 1-3 dB stay visible."""
    pts = [(r["method"], float(r[column])) for r in rows if column in r and np.isfinite(float(r[column]))]
    reverse = metric_direction(column) != "lower"
    pts.sort(key=lambda p: p[1], reverse=reverse)
    if not pts:
        return [], (0.0, 1.0)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.01, 1e-6)
    low = lo - pad if lo < 0 or lo - pad > 0 else 0.0  # non-negative values: not below 0
    return pts, (low, hi + pad)
