"""Sparse autoencoder: a bottleneck autoencoder trained with an L1 penalty on its latent activations."""

from __future__ import annotations

import torch

from denoise.config import ModelConfig
from denoise.models.autoencoder import ConvAutoencoder

__all__ = ["SparseAutoencoder", "sparsity_fraction"]


class SparseAutoencoder(ConvAutoencoder):
    """`ConvAutoencoder` without skips and with a ReLU code, so the L1 penalty
    (`denoise.losses.sparsity`, weight ``TrainConfig.sparsity_weight``) drives units to exactly zero."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(ModelConfig(**{**config.__dict__, "skip": False}))
        self.to_latent = torch.nn.Sequential(self.to_latent, torch.nn.ReLU())


def sparsity_fraction(z: torch.Tensor, *, tol: float = 1e-3) -> float:
    """Fraction of latent activations with magnitude below ``tol`` (near-zero units)."""
    return float((z.abs() < tol).float().mean())
