"""Convolutional (denoising) autoencoder, 2D and 3D in one class, built from MONAI blocks."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.utils import pixelshuffle, pixelunshuffle
from torch import nn
from torch.nn import functional as F

from denoise.config import ModelConfig
from denoise.models.trainable import Trainable

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(Trainable, nn.Module):
    """Strided-convolution encoder to a bottleneck, transposed-convolution decoder back.

    Each level has two 3x3(x3) convolutions with PReLU; levels after the first start with a
    stride-2 convolution. With ``skip`` the decoder concatenates the encoder features of the same
    level (a small U-Net: the best quality per FLOP for denoising); with ``residual`` the network
    predicts the noise and the output is ``input - noise``. With ``shuffle`` > 1 the network
    works on pixel-unshuffled sub-images (FFDNet) and shuffles its output back to full
    resolution. Inputs of any size are padded to a multiple of ``shuffle * 2 ** (levels - 1)``
    and cropped back. A 3D ``slab`` model keeps the slice axis (the first spatial axis) at full
    resolution: unshuffle and strides act in-plane, the first convolution spans ``context``
    slices each side (edge slices repeated, as 2.5D inference does) and the convolutions of the
    ``depth_levels`` deepest levels span 3 slices, the others 1. With ``tail`` a small
    full-resolution refinement corrects the shuffled-back output (the sub-pixel phases of an
    unshuffled network disagree; the tail is shift-equivariant).

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
        self.slab = config.slab
        r = config.shuffle ** (2 if self.slab else d)
        # slab: (depth, in-plane) kernel depth per level and in-plane-only strides
        deep = [self.slab and i >= len(ch) - config.depth_levels for i in range(len(ch))]
        k = (lambda i: (3 if deep[i] else 1, 3, 3)) if self.slab else (lambda i: 3)
        s2 = (1, 2, 2) if self.slab else 2
        self.encoder = nn.ModuleList()
        prev = config.input_channels * r
        if self.slab:  # the first convolution spans the context slices (padded by replication in _enter)
            first = _conv(d, prev, ch[0], kernel=(1 + 2 * self.context, 3, 3), padding=(0, 1, 1))
        else:
            first = _conv(d, prev, ch[0])
        for i, c in enumerate(ch):
            self.encoder.append(nn.Sequential(first if i == 0 else _conv(d, prev, c, stride=s2, kernel=k(i)),
                                              _conv(d, c, c, kernel=k(i))))
            prev = c
        self.to_latent, self.from_latent = self._latent_layers()
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(len(ch) - 2, -1, -1):
            self.up.append(_conv(d, ch[i + 1], ch[i], stride=s2, transposed=True, kernel=(1, 3, 3) if self.slab else 3))
            self.merge.append(_conv(d, ch[i] * (2 if self.skip else 1), ch[i], kernel=k(i)))
        self.head = Convolution(d, ch[0], r, kernel_size=1, conv_only=True)
        self.tail = _tail(d, config) if config.tail else None

    @property
    def divisor(self) -> int:
        return self.shuffle * 2 ** (len(self.config.channels) - 1)

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        """Pad to the divisor and, with ``shuffle``, rearrange into sub-images."""
        if self.slab:
            x = _pad_to(x, self.divisor, first_axis=False)
            if self.context:
                x = F.pad(x, (0, 0, 0, 0, self.context, self.context), mode="replicate")
            return _inplane_unshuffle(x, self.shuffle) if self.shuffle > 1 else x
        x = _pad_to(x, self.divisor)
        return pixelunshuffle(x, self.spatial_dims, self.shuffle) if self.shuffle > 1 else x

    def _exit(self, h: torch.Tensor) -> torch.Tensor:
        """Output head and, with ``shuffle``, sub-images back to full resolution."""
        h = self.head(h)
        if self.shuffle == 1:
            return h
        return _inplane_shuffle(h, self.shuffle) if self.slab else pixelshuffle(h, self.spatial_dims, self.shuffle)

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
        centre = x[:, :1] if self.slab else x[:, self.context : self.context + 1]
        if self.tail is not None:  # full-resolution correction: output, noisy centre, noise level
            extra = [x[:, -1:]] if self.config.noise_channel else []
            out = out + self.tail(torch.cat([out, centre, *extra], dim=1))
        return (centre - out if self.residual else out), z

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference output (the denoised image); subclasses with stochastic parts use the mean."""
        return self.forward(x)


def _tail(d: int, config: ModelConfig) -> nn.Sequential:
    """The full-resolution refinement (`ModelConfig.tail`): in-plane 3x3 convolutions, the last
    one zero-initialised so that the tail starts as no change."""
    k = (1, 3, 3) if config.slab else 3
    c = config.tail
    out = Convolution(d, c, 1, kernel_size=k, conv_only=True, padding=(0, 1, 1) if config.slab else 1)
    nn.init.zeros_(out.conv.weight)
    nn.init.zeros_(out.conv.bias)
    return nn.Sequential(_conv(d, 2 + int(config.noise_channel), c, kernel=k), _conv(d, c, c, kernel=k), out)


def _conv(d: int, cin: int, cout: int, *, stride: int | tuple[int, ...] = 1, transposed: bool = False,
          kernel: int | tuple[int, ...] = 3, padding: int | tuple[int, ...] | None = None) -> Convolution:
    """3x3(x3) convolution + PReLU; tuples give per-axis kernels/strides (padding: half the kernel)."""
    if padding is None:
        padding = tuple(q // 2 for q in kernel) if isinstance(kernel, tuple) else kernel // 2
    out_pad = (tuple(t - 1 for t in stride) if isinstance(stride, tuple) else stride - 1) if transposed else None
    return Convolution(d, cin, cout, strides=stride, kernel_size=kernel, act="PRELU", norm=None,
                       is_transposed=transposed, padding=padding, output_padding=out_pad)


def _pad_to(x: torch.Tensor, divisor: int, *, first_axis: bool = True) -> torch.Tensor:
    """Replicate-pad the spatial axes (all, or all but the first) up to a multiple of ``divisor``."""
    pads = []
    for i, s in enumerate(reversed(x.shape[2:])):
        extra = 0 if (not first_axis and i == x.dim() - 3) else (-s) % divisor
        pads += [0, extra]
    # while exporting (ONNX, torch.export, TorchScript tracing) always pad: a branch on the size would fix it in the graph
    exporting = torch.compiler.is_exporting() or torch.jit.is_tracing()
    return F.pad(x, pads, mode="replicate") if any(pads) or exporting else x


def _inplane_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """MONAI ``pixelunshuffle`` on the last two axes only: (B, C, D, H, W) -> (B, C r^2, D, H/r, W/r),
    channels in the same order as the 2D operation (so 2.5D weights map onto slab weights)."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d, h // r, r, w // r, r).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * r * r, d, h // r, w // r)


def _inplane_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Inverse of `_inplane_unshuffle`."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c // (r * r), r, r, d, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c // (r * r), d, h * r, w * r)


def _crop_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return x[(..., *[slice(0, s) for s in shape])]
