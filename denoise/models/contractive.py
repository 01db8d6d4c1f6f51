"""Contractive autoencoder: a bottleneck autoencoder trained with a penalty on the squared Frobenius
norm of its encoder's Jacobian (Rifai et al., ICML 2011), so that the code changes little when the
input moves off the data: robust features, and for denoising a code that ignores the noise."""

from __future__ import annotations

import torch

from denoise.config import ModelConfig, TrainConfig
from denoise.losses import jacobian_frobenius, reconstruction
from denoise.models.autoencoder import ConvAutoencoder

__all__ = ["ContractiveAutoencoder", "latent_sensitivity"]


class ContractiveAutoencoder(ConvAutoencoder):
    """`ConvAutoencoder` without skips and without the residual path (the code must carry
    everything, or the penalty only moves the information around it). Trained with
    `denoise.losses.jacobian_frobenius` on `encode`, weight ``TrainConfig.contractive_weight``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(ModelConfig(**{**config.__dict__, "skip": False, "residual": False}))

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor, cfg: TrainConfig, *, beta: float = 0.0,
                      forward=None, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction + ``cfg.contractive_weight`` x the Hutchinson estimate of ||J_encode||_F^2."""
        return (reconstruction((forward if forward is not None else self)(noisy), clean, kind=cfg.loss, pixel_weight=pixel_weight)
                + cfg.contractive_weight * jacobian_frobenius(self.encode, noisy))

    def validation_measures(self, noisy: torch.Tensor) -> dict[str, float]:
        """``latent_sensitivity`` of the code on the first 8 validation patches."""
        return {"latent_sensitivity": latent_sensitivity(self.encode, noisy[:8])}


@torch.no_grad()
def latent_sensitivity(encode, x: torch.Tensor, *, eps: float = 1e-3, samples: int = 4, seed: int = 0) -> float:
    """How much the code moves per unit of input change: the mean over ``samples`` random
    perturbations d (Gaussian, RMS ``eps`` per voxel) of ||encode(x + d) - encode(x)|| / ||d||,
    per image. A finite-difference reading of the Jacobian's size along random directions (for
    small ``eps``, its Frobenius norm / sqrt(input size))."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    z = encode(x)
    ratios = []
    for _ in range(samples):
        d = (torch.randn(x.shape, generator=gen) * eps).to(x.device, x.dtype)
        dz = (encode(x + d) - z).flatten(1).norm(dim=1)
        ratios.append(dz / d.flatten(1).norm(dim=1))
    return float(torch.stack(ratios).mean())
