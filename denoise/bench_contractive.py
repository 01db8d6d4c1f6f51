"""What the contractive penalty does (issue #25 item 1), measured on held-out scans: the code's
sensitivity to small input perturbations (`denoise.models.latent_sensitivity`), the Hutchinson
estimate of the encoder's ||J||_F^2 per patch, and the denoising quality (foreground PSNR) of a
trained checkpoint. `scripts/contractive_sweep.py` trains the sweep and writes the table and plot."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from denoise.checkpoint import load_checkpoint
from denoise.infer import denoise_array, load_model
from denoise.losses import jacobian_frobenius
from denoise.metrics import foreground_mask, psnr
from denoise.models import latent_sensitivity
from denoise.noise import add_noise
from denoise.normalize import reference_intensity
from denoise.scan import Scan

__all__ = ["contractive_row", "centre_patches"]


def centre_patches(array: np.ndarray, size: int = 64) -> np.ndarray:
    """Each slice's central ``size`` x ``size`` patch, (n, 1, size, size)."""
    _, h, w = array.shape
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(array[:, None, y : y + size, x : x + size])


def contractive_row(ckpt, clean: Scan, noise: str = "rician:0.05", *, seed: int = 0) -> dict[str, Any]:
    """Sensitivity, ||J||_F^2 and fg PSNR of one checkpoint on one clean held-out scan with noise."""
    net, info, _ = load_checkpoint(ckpt)
    noisy = add_noise(clean, noise, seed=seed)
    ref = reference_intensity(clean.array)
    x = torch.from_numpy(centre_patches(noisy.array / ref).astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sens = latent_sensitivity(net.encode, x)
    jac = float(jacobian_frobenius(net.encode, x, samples=8, generator=gen).detach())
    den = denoise_array(noisy.array, load_model(ckpt, device="cpu"), modality=clean.modality, spacing=clean.spacing)
    mask = foreground_mask(clean.array)
    return {"weight": float(info.get("train", {}).get("contractive_weight", 0.0)) if info["model"]["kind"] == "cae" else 0.0,
            "kind": info["model"]["kind"], "latent_sensitivity": sens, "jacobian_frobenius2": jac,
            "psnr_fg": psnr(clean.array, den, data_range=ref, mask=mask),
            "psnr_fg_noisy": psnr(clean.array, noisy.array, data_range=ref, mask=mask)}
