"""Loss terms as pure functions of tensors."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["reconstruction", "kl_divergence", "sparsity", "beta_schedule"]


def reconstruction(output: torch.Tensor, target: torch.Tensor, *, kind: str = "mse") -> torch.Tensor:
    """Mean squared ("mse") or absolute ("l1") error."""
    if kind == "mse":
        return F.mse_loss(output, target)
    if kind == "l1":
        return F.l1_loss(output, target)
    raise ValueError(f"reconstruction loss must be 'mse' or 'l1', got {kind!r}")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent units, averaged over the batch and
    divided by the number of image voxels is left to the caller (this returns per-latent mean)."""
    return 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)


def sparsity(z: torch.Tensor) -> torch.Tensor:
    """Mean absolute latent activation (the L1 sparsity penalty)."""
    return z.abs().mean()


def beta_schedule(beta: float, epoch: int, warmup_epochs: int) -> float:
    """Linear KL warm-up: 0 at epoch 0 up to ``beta`` after ``warmup_epochs``."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)
