"""Sparse autoencoder: a bottleneck autoencoder trained with an L1 penalty on its latent activations."""

from __future__ import annotations

import torch

from denoise.config import ModelConfig, TrainConfig
from denoise.losses import reconstruction, sparsity
from denoise.models.autoencoder import ConvAutoencoder

__all__ = ["SparseAutoencoder", "sparsity_fraction"]


class SparseAutoencoder(ConvAutoencoder):
    """`ConvAutoencoder` without skips and with a ReLU code, so the L1 penalty
    (`denoise.losses.sparsity`, weight ``TrainConfig.sparsity_weight``) drives units to exactly zero."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(ModelConfig(**{**config.__dict__, "skip": False}))
        self.to_latent = torch.nn.Sequential(self.to_latent, torch.nn.ReLU())

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor, cfg: TrainConfig, *, beta: float = 0.0,
                      forward=None, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction + ``cfg.sparsity_weight`` x the mean absolute code (L1)."""
        recon, z = self.forward_with_latent(noisy)
        return reconstruction(recon, clean, kind=cfg.loss, pixel_weight=pixel_weight) + cfg.sparsity_weight * sparsity(z)

    def validation_measures(self, noisy: torch.Tensor) -> dict[str, float]:
        """``sparsity``: the fraction of near-zero code values (`sparsity_fraction`)."""
        _, z = self.forward_with_latent(noisy)
        return {"sparsity": sparsity_fraction(z)}


def sparsity_fraction(z: torch.Tensor, *, tol: float = 1e-3) -> float:
    """Fraction of latent activations with magnitude below ``tol`` (near-zero units)."""
    return float((z.abs() < tol).float().mean())
