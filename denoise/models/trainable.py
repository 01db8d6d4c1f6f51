"""What the training harness asks of a network: its loss and its extra validation measures.

Each kind of autoencoder owns its objective (`denoise.train.fit` does not branch on the kind):
the plain and denoising AE and the linear AE reconstruct (with the one-pixel shift-consistency
term when ``TrainConfig.shift_consistency`` > 0), the VAE adds its KL, the sparse AE the L1 of its
code, the contractive AE the Jacobian penalty of its encoder. The loss terms themselves are pure
functions in `denoise.losses`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from denoise.config import TrainConfig
from denoise.losses import reconstruction, shift_consistency

__all__ = ["Trainable"]


class Trainable:
    """Mixin of the trainable networks: ``training_loss`` and ``validation_measures``."""

    def training_loss(self, noisy: torch.Tensor, clean: torch.Tensor, cfg: TrainConfig, *, beta: float = 0.0,
                      forward: Callable[[torch.Tensor], object] | None = None,
                      pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of one training batch (a scalar tensor to back-propagate).

        Args:
            noisy, clean: the batch's network input and target.
            cfg: the training options (reconstruction kind, this kind's weights).
            beta: the VAE's KL weight at this epoch (`denoise.losses.beta_schedule`); others ignore it.
            forward: what runs the network, when not the network itself (a DistributedDataParallel
                wrapper of it, whose forward synchronises the gradients).
            pixel_weight: per-pixel weights of the reconstruction term (`TrainConfig.lesion_weight`).
        """
        run = forward if forward is not None else self
        if cfg.shift_consistency > 0:
            return shift_consistency(run, noisy, clean, kind=cfg.loss, weight=cfg.shift_consistency,
                                     pixel_weight=pixel_weight)
        return reconstruction(run(noisy), clean, kind=cfg.loss, pixel_weight=pixel_weight)

    def validation_measures(self, noisy: torch.Tensor) -> dict[str, float]:
        """Measures of this kind beyond PSNR/SSIM, recorded per epoch (none for a plain AE)."""
        return {}
