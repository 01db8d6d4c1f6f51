"""Does the flip-spread uncertainty map mean something? (issue #26 section 2)

On clean held-out scans with synthetic noise, per case: the correlation (Pearson and Spearman)
between the predicted spread (`denoise.uncertainty.flip_spread`) and the actual absolute error
|denoised - clean| over the foreground (`denoise.metrics.foreground_mask` of the clean scan), the
same for a simple baseline predictor (the local standard deviation of the denoised image in a 3x3
in-plane window: "errors sit at edges"), and the observed error in ten equal-count bins of the
predicted spread (the calibration curve). A single realisation's |error| is mostly chance, so each
case also denoises ``extra`` more noise realisations: their mean |error| per voxel estimates the
expected error, which the maps are correlated with too, and whose correlation with the first
realisation's |error| is the ceiling any per-voxel predictor could reach. Compute only; `scripts/uncertainty_benchmark.py` builds
the cases and writes the tables and the plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, stats

from denoise.infer import denoise_array, load_model, own_output
from denoise.metrics import foreground_mask
from denoise.noise import add_noise
from denoise.scan import Scan
from denoise.uncertainty import flip_spread

__all__ = ["calibration_case", "BINS"]

BINS = 10


def calibration_case(clean: Scan, noise: str, model: str, *, seed: int = 0,
                     extra: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary row, calibration bins) for one clean scan, noise spec and model; noise seeds
    ``seed`` (the scored realisation) and ``seed + 1 ... seed + extra`` (the expected error)."""
    den_model = load_model(model, device="cpu")
    kw = {"modality": clean.modality, "spacing": clean.spacing}
    mask = foreground_mask(clean.array)
    noisy = add_noise(clean, noise, seed=seed)
    details: dict = {}
    den = denoise_array(noisy.array, den_model, details=details, **kw)
    spread = flip_spread(noisy.array, den_model, first=den if own_output(details) else None, **kw)
    err = np.abs(den - clean.array)[mask]
    expected = np.mean([np.abs(denoise_array(add_noise(clean, noise, seed=seed + k).array, den_model, **kw)
                               - clean.array)[mask] for k in range(1, extra + 1)], axis=0)
    pred = spread[mask]
    local = _local_std(den)[mask]
    r = lambda a, b: float(stats.pearsonr(a, b)[0])  # noqa: E731
    row = {"model": model, "noise": noise, "voxels": int(mask.sum()),
           "pearson": r(pred, err), "spearman": float(stats.spearmanr(pred, err)[0]),
           "baseline_pearson": r(local, err), "baseline_spearman": float(stats.spearmanr(local, err)[0]),
           "pearson_expected": r(pred, expected), "baseline_pearson_expected": r(local, expected),
           "ceiling_pearson": r(expected, err),
           "mean_spread": float(pred.mean()), "mean_abs_error": float(err.mean()),
           "error_over_spread": float(err.mean() / max(pred.mean(), 1e-12))}
    edges = np.quantile(pred, np.linspace(0, 1, BINS + 1))
    which = np.clip(np.searchsorted(edges, pred, side="right") - 1, 0, BINS - 1)
    bins = []
    for b in range(BINS):
        sel = which == b
        if sel.any():
            bins.append({"model": model, "noise": noise, "bin": b, "voxels": int(sel.sum()),
                         "mean_spread": float(pred[sel].mean()), "mean_abs_error": float(err[sel].mean()),
                         "rms_error": float(np.sqrt(np.mean(err[sel] ** 2)))})
    return row, bins


def _local_std(image: np.ndarray) -> np.ndarray:
    """Standard deviation in a 3x3 in-plane window (slices separately)."""
    size = (1,) * (image.ndim - 2) + (3, 3)
    m = ndimage.uniform_filter(image.astype(np.float64), size)
    m2 = ndimage.uniform_filter(image.astype(np.float64) ** 2, size)
    return np.sqrt(np.maximum(m2 - m * m, 0)).astype(np.float32)
