"""Convolutional variational autoencoder: mu/logvar, reparameterisation, KL; sampling and interpolation."""

from __future__ import annotations

from typing import NamedTuple

import torch
from monai.networks.blocks import Convolution

from denoise.config import ModelConfig, TrainConfig
from denoise.losses import kl_divergence, reconstruction
from denoise.models.autoencoder import ConvAutoencoder, _crop_to, _pad_to

__all__ = ["VAE", "VAEOutput"]


class VAEOutput(NamedTuple):
    """What `VAE.forward` returns: reconstruction, posterior mean and log-variance, the latent used."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class VAE(ConvAutoencoder):
    """A `ConvAutoencoder` without skips whose bottleneck is a diagonal Gaussian posterior.

    The latent is a small feature map (``latent_channels`` x spatial / 2^(levels-1)), so the model
    works on any image size. In training ``z = mu + exp(logvar / 2) * eps``; in eval mode (and in
    `predict`) ``z = mu``: inference reconstructs from the posterior mean, not a sample and not
    mean + std (the MONAI VarAutoEncoder bug, Project-MONAI/MONAI#8413).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(ModelConfig(**{**config.__dict__, "skip": False}))
        d, c, k = self.spatial_dims, config.channels[-1], config.latent_channels
        self.to_latent = Convolution(d, c, 2 * k, kernel_size=1, conv_only=True)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """(mu, logvar) of the posterior for ``x``."""
        h = _pad_to(x, self.divisor)
        for level in self.encoder:
            h = level(h)
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """A sample ``mu + sigma * eps`` in training mode; ``mu`` in eval mode."""
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, x: torch.Tensor) -> VAEOutput:  # type: ignore[override]
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        recon = _crop_to(self.decode(z), x.shape[2:])
        if self.residual:
            recon = x[:, self.context : self.context + 1] - recon
        return VAEOutput(recon, mu, logvar, z)

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor, cfg: TrainConfig, *, beta: float = 0.0,
                      forward=None, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction of a reparameterised sample + ``beta`` x KL to the unit Gaussian."""
        out: VAEOutput = (forward if forward is not None else self)(noisy)
        return (reconstruction(out.recon, clean, kind=cfg.loss, pixel_weight=pixel_weight)
                + beta * kl_divergence(out.mu, out.logvar))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised image from the posterior mean (deterministic)."""
        mu, _ = self.encode(x)
        recon = _crop_to(self.decode(mu), x.shape[2:])
        return x[:, self.context : self.context + 1] - recon if self.residual else recon

    @torch.no_grad()
    def sample(self, n: int, *, spatial_size: int | None = None, seed: int | None = None) -> torch.Tensor:
        """Decode ``n`` latents drawn from N(0, I): images of edge ``spatial_size`` (default patch_size)."""
        size = spatial_size or self.config.patch_size
        lat = -(-size // self.divisor)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(n, self.config.latent_channels, *([lat] * self.spatial_dims), generator=gen)
        z = z.to(next(self.parameters()).device)
        return _crop_to(self.decode(z), (size,) * self.spatial_dims)

    @torch.no_grad()
    def interpolate(self, a: torch.Tensor, b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decode ``steps`` points on the straight line between the posterior means of images a, b.

        Args:
            a, b: images (1, 1, *spatial) of the same shape.
        Returns:
            (steps, 1, *spatial).
        """
        if a.shape != b.shape:
            raise ValueError(f"interpolate needs images of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        mu_a, _ = self.encode(a)
        mu_b, _ = self.encode(b)
        t = torch.linspace(0, 1, steps, device=mu_a.device).view(-1, *([1] * (mu_a.ndim - 1)))
        z = (1 - t) * mu_a + t * mu_b
        return _crop_to(self.decode(z), a.shape[2:])
