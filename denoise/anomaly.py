"""Anomaly maps from an autoencoder's reconstruction error (and a VAE's KL term), and how to score them.

The idea of reconstruction-based unsupervised anomaly segmentation (Baur et al., Med. Image Anal.
69:101952, 2021): an autoencoder trained on normal anatomy reconstructs what it has seen and fails on
what it has not, so ``|input - reconstruction|`` is bright where the scan holds something unusual.
`anomaly_map` computes that map for any learned model of this package (a bottleneck AE, the VAE,
the sparse or contractive AE; a denoising AE too, whose reconstruction error is mostly the noise it
removes), or the intensity z-score baseline, as a volume in the scan's geometry. Compute only: no
file I/O (`denoise.anomaly_job` writes maps for folders). `anomaly_measures` scores a map against a
lesion mask: voxel-wise AUROC and AUPRC (average precision) and the best Dice over all thresholds
(the "upper bound Dice" of the literature), all inside a region mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from denoise.metrics import foreground_mask

__all__ = ["SCORES", "POLARITIES", "anomaly_map", "anomaly_scan", "anomaly_measures", "best_dice"]

# residual: |input - reconstruction| in the scan's units; kl: a VAE's per-location KL divergence of its
# posterior from N(0, I), upsampled from the latent grid (nats per latent location); zscore: the
# baseline without any model, (x - mean) / std of the scan's foreground
SCORES = ("residual", "kl", "zscore")
# bright: only where the scan is brighter than expected (FLAIR/T2 lesions, enhancement); dark: only
# darker; both: either
POLARITIES = ("both", "bright", "dark")


def anomaly_map(array: np.ndarray, model: Any = None, *, score: str = "residual", polarity: str = "both",
                modality: str = "MR", spacing: tuple[float, ...] | None = None, smooth: float = 1.0,
                batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Per-voxel anomaly map of ``array`` ((y, x) or (z, y, x), physical units), float32, >= 0.

    Args:
        model: a `denoise.infer.LearnedDenoiser` (``load_model(...)``); not used for ``zscore``.
        score: "residual" (reconstruction error, scan units), "kl" (VAE only: KL divergence per
            latent location, each slice's map upsampled bilinearly to the slice) or "zscore".
        polarity: "both" (absolute value), "bright" (input above the reconstruction / mean only) or
            "dark" (below only). The KL map has no sign and ignores it.
        spacing: voxel size (mm, array order): 2D models slice along the acquired axis
            (`LearnedDenoiser.plan`).
        smooth: in-plane Gaussian smoothing of the map, sigma in pixels (0 = none): single noisy
            voxels are not lesions (the literature filters likewise, e.g. a median filter).
    Outside the scan's foreground (`denoise.metrics.foreground_mask`) the map is 0.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    a = np.asarray(array, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"anomaly maps are for 2D slices and 3D volumes, got shape {a.shape}")
    fg = foreground_mask(a)
    if score == "zscore":
        vals = a[fg]
        signed = (a - vals.mean()) / max(float(vals.std()), 1e-6)
    elif model is None:
        raise ValueError(f"score {score!r} needs a learned model")
    elif score == "kl":
        signed = _kl_map(a, model, modality, batch_size)
    else:
        from denoise.infer import denoise_array

        signed = a - denoise_array(a, model, modality=modality, batch_size=batch_size, progress=progress,
                                   spacing=spacing)
    if score == "kl" or polarity == "both":
        out = np.abs(signed)
    else:
        out = np.maximum(signed if polarity == "bright" else -signed, 0.0)
    if smooth > 0:
        sig = (0.0,) * (out.ndim - 2) + (smooth, smooth)
        out = ndimage.gaussian_filter(out, sig)
    out[~fg] = 0.0
    return out.astype(np.float32)


def anomaly_scan(scan: Any, model: Any = None, **kwargs: Any) -> Any:
    """`anomaly_map` of a `denoise.scan.Scan` as a Scan of the same geometry (kwargs as there)."""
    kwargs.setdefault("modality", scan.modality)
    kwargs.setdefault("spacing", scan.spacing)
    return scan.with_array(anomaly_map(scan.array, model, **kwargs))


def _kl_map(a: np.ndarray, model: Any, modality: str, batch_size: int) -> np.ndarray:
    """A VAE's KL(q(z|x) || N(0, I)) summed over latent channels at each latent location, per slice
    along the first axis, upsampled to the slice."""
    import torch
    import torch.nn.functional as F

    from denoise.normalize import normalization_for

    net = getattr(model, "net", None)
    if not hasattr(net, "encode") or getattr(model, "kind", "") != "vae":
        raise ValueError(f"score 'kl' needs a VAE (e.g. vae-mr-2d); {getattr(model, 'name', model)!r} is not one")
    if getattr(model, "spatial_dims", 2) != 2 or getattr(model, "context", 0):
        raise ValueError("score 'kl' is implemented for 2D single-slice VAEs")
    norm = model.normalization or normalization_for(modality)
    x, _, _, _ = norm.to_model(a)
    vol = x[None] if x.ndim == 2 else x
    out = np.empty(vol.shape, dtype=np.float32)
    device = next(net.parameters()).device
    with torch.no_grad():
        for i in range(0, len(vol), batch_size):
            t = torch.from_numpy(np.ascontiguousarray(vol[i : i + batch_size]))[:, None].to(device)
            mu, logvar = net.encode(t)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1, keepdim=True).float()
            size = tuple(s * net.divisor for s in kl.shape[2:])  # the padded input's size
            up = F.interpolate(kl, size=size, mode="bilinear", align_corners=False)
            out[i : i + len(t)] = up[:, 0, : t.shape[2], : t.shape[3]].cpu().numpy()
    return out[0] if x.ndim == 2 else out


def best_dice(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(the highest Dice over all thresholds, the threshold reaching it) of ``scores > threshold``
    against the boolean ``labels`` (flat arrays): every threshold between distinct values is tried."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    dice = np.where(last, 2 * tp / (k + y.sum()), -1.0)
    i = int(np.argmax(dice))
    return float(dice[i]), float(s[i])


def anomaly_measures(amap: np.ndarray, lesions: np.ndarray, region: np.ndarray | None = None) -> dict[str, float]:
    """Voxel-wise AUROC, AUPRC (average precision; chance level = the lesion fraction), best Dice
    and its threshold of ``amap`` against the boolean ``lesions``, inside ``region`` (default:
    everywhere). MONAI's `compute_roc_auc` and `compute_average_precision`."""
    import torch
    from monai.metrics import compute_average_precision, compute_roc_auc

    region = np.ones(amap.shape, dtype=bool) if region is None else region.astype(bool)
    s = np.asarray(amap, dtype=np.float64)[region]
    y = np.asarray(lesions, dtype=bool)[region]
    if y.all() or not y.any():
        raise ValueError("the lesion mask must hold both lesion and non-lesion voxels inside the region")
    ts, ty = torch.from_numpy(s), torch.from_numpy(y.astype(np.float64))
    dice, thr = best_dice(s, y)
    return {"auroc": float(compute_roc_auc(ts, ty)), "auprc": float(compute_average_precision(ts, ty)),
            "best_dice": dice, "threshold": thr, "lesion_fraction": float(y.mean())}
