"""Linear autoencoder on patches: the model whose optimum spans the PCA subspace."""

from __future__ import annotations

import torch
from torch import nn

from denoise.config import ModelConfig
from denoise.models.autoencoder import _crop_to, _pad_to
from denoise.models.trainable import Trainable

__all__ = ["LinearAutoencoder"]


class LinearAutoencoder(Trainable, nn.Module):
    """``x -> W_d (W_e x + b_e) + b_d`` on non-overlapping patches of edge ``patch_size``.

    Implemented as a strided convolution (encoder: ``n_components`` filters of one patch each) and
    its transposed twin, so it runs on whole images. Trained with MSE its code spans the top
    ``n_components`` principal components of the (centred) patches (Baldi & Hornik 1989).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.spatial_dims = config.spatial_dims
        conv = nn.Conv2d if config.spatial_dims == 2 else nn.Conv3d
        tconv = nn.ConvTranspose2d if config.spatial_dims == 2 else nn.ConvTranspose3d
        p, k = config.patch_size, config.n_components
        self.encoder = conv(1, k, kernel_size=p, stride=p)
        self.decoder = tconv(k, 1, kernel_size=p, stride=p)

    @property
    def divisor(self) -> int:
        return self.config.patch_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(_pad_to(x, self.divisor))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _crop_to(self.decode(self.encode(x)), x.shape[2:])

    def forward_with_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return _crop_to(self.decode(z), x.shape[2:]), z

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def subspace(self) -> torch.Tensor:
        """Decoder basis (patch_size^d, n_components): the columns span the learned subspace."""
        return self.decoder.weight.detach().reshape(self.config.n_components, -1).T
