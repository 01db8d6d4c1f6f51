"""Convolutional (denoising) autoencoder, 2D and 3D in one class, built from MONAI blocks."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.utils import pixelshuffle, pixelunshuffle
from torch import nn
from torch.nn import functional as F

from denoise.config import ModelConfig

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    """Strided-convolution encoder to a bottleneck, transposed-convolution decoder back.

    Each level has two 3x3(x3) convolutions with PReLU; levels after the first start with a
    stride-2 convolution. With ``skip`` the decoder concatenates the encoder features of the same
    level (a small U-Net: the best quality per FLOP for denoising); with ``residual`` the network
    predicts the noise and the output is ``input - noise``. With ``shuffle`` > 1 the network
    works on pixel-unshuffled sub-images (FFDNet) and shuffles its output back to full
    resolution. Inputs of any size are padded to a multiple of ``shuffle * 2 ** (levels - 1)``
    and cropped back.

    Args:
        config: the architecture (`ModelConfig`).

    Example:
        >>> net = ConvAutoencoder(ModelConfig(spatial_dims=3, channels=(4, 8)))
        >>> net(torch.zeros(1, 1, 9, 10, 11)).shape
        torch.Size([1, 1, 9, 10, 11])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, ch = config.spatial_dims, config.channels
        self.spatial_dims = d
        self.skip = config.skip and config.kind == "dae"
        self.residual = config.residual
        self.context = config.context
        self.shuffle = config.shuffle
        r = config.shuffle ** d
        self.encoder = nn.ModuleList()
        prev = (1 + 2 * config.context + int(config.noise_channel)) * r
        for i, c in enumerate(ch):
            self.encoder.append(nn.Sequential(_conv(d, prev, c, stride=1 if i == 0 else 2), _conv(d, c, c)))
            prev = c
        self.to_latent, self.from_latent = self._latent_layers()
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(len(ch) - 2, -1, -1):
            self.up.append(_conv(d, ch[i + 1], ch[i], stride=2, transposed=True))
            self.merge.append(_conv(d, ch[i] * (2 if self.skip else 1), ch[i]))
        self.head = Convolution(d, ch[0], r, kernel_size=1, conv_only=True)

    @property
    def divisor(self) -> int:
        return self.shuffle * 2 ** (len(self.config.channels) - 1)

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to the divisor and, with ``shuffle``, rearrange into sub-images."""
        x = _pad_to(x, self.divisor)
        return pixelunshuffle(x, self.spatial_dims, self.shuffle) if self.shuffle > 1 else x

    def _exit(self, h: torch.Tensor) -> torch.Tensor:
        """Output head and, with ``shuffle``, sub-images back to full resolution."""
        h = self.head(h)
        return pixelshuffle(h, self.spatial_dims, self.shuffle) if self.shuffle > 1 else h

    def _latent_layers(self) -> tuple[nn.Module, nn.Module]:
        if self.skip:
            return nn.Identity(), nn.Identity()
        d, c, k = self.spatial_dims, self.config.channels[-1], self.config.latent_channels
        return (Convolution(d, c, k, kernel_size=1, conv_only=True),
                Convolution(d, k, c, kernel_size=1, act="PRELU", norm=None))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck code of ``x`` (B, 1, *spatial) -> (B, latent_channels, *spatial / 2^(L-1))."""
        x = self._enter(x)
        for level in self.encoder:
            x = level(x)
        return self.to_latent(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Image from a bottleneck code (no skips: only meaningful when ``skip`` is False)."""
        h = self.from_latent(z)
        for up, merge in zip(self.up, self.merge):
            h = merge(up(h))
        return self._exit(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised image (B, 1, *spatial) from ``x`` (B, 1 + 2 context, *spatial)."""
        return self.forward_with_latent(x)[0]

    def forward_with_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, bottleneck code)."""
        shape = x.shape[2:]
        h = self._enter(x)
        feats = []
        for level in self.encoder:
            h = level(h)
            feats.append(h)
        z = self.to_latent(h)
        h = self.from_latent(z)
        for i, (up, merge) in enumerate(zip(self.up, self.merge)):
            h = up(h)
            if self.skip:
                h = torch.cat([h, feats[-2 - i]], dim=1)
            h = merge(h)
        out = _crop_to(self._exit(h), shape)
        centre = x[:, self.context : self.context + 1]
        return (centre - out if self.residual else out), z

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference output (the denoised image); subclasses with stochastic parts use the mean."""
        return self.forward(x)


def _conv(d: int, cin: int, cout: int, *, stride: int = 1, transposed: bool = False) -> Convolution:
    return Convolution(d, cin, cout, strides=stride, kernel_size=3, act="PRELU", norm=None,
                       is_transposed=transposed, padding=1, output_padding=stride - 1 if transposed else None)


def _pad_to(x: torch.Tensor, divisor: int) -> torch.Tensor:
    pads = []
    for s in reversed(x.shape[2:]):
        extra = (-s) % divisor
        pads += [0, extra]
    return F.pad(x, pads, mode="replicate") if any(pads) else x


def _crop_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return x[(..., *[slice(0, s) for s in shape])]
