"""Loss terms as pure functions of tensors."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["reconstruction", "kl_divergence", "sparsity", "beta_schedule", "shift_consistency", "jacobian_frobenius"]


def reconstruction(output: torch.Tensor, target: torch.Tensor, *, kind: str = "mse",
                   pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared ("mse") or absolute ("l1") error, in float32 (also under autocast).

    ``pixel_weight`` (target-shaped, > 0): a weighted mean instead, sum(w e) / sum(w), e.g. more
    weight where faint lesions were inserted into the target (`TrainConfig.lesion_weight`)."""
    output, target = output.float(), target.float()
    if kind not in ("mse", "l1"):
        raise ValueError(f"reconstruction loss must be 'mse' or 'l1', got {kind!r}")
    if pixel_weight is not None:
        err = (output - target).pow(2) if kind == "mse" else (output - target).abs()
        w = pixel_weight.float()
        return (w * err).sum() / w.sum()
    return F.mse_loss(output, target) if kind == "mse" else F.l1_loss(output, target)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent units, averaged over the batch and
    divided by the number of image voxels is left to the caller (this returns per-latent mean)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * torch.mean(mu.pow(2) + logvar.exp() - 1.0 - logvar)


def sparsity(z: torch.Tensor) -> torch.Tensor:
    """Mean absolute latent activation (the L1 sparsity penalty)."""
    return z.float().abs().mean()


def jacobian_frobenius(encode, x: torch.Tensor, *, samples: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Hutchinson estimate of the squared Frobenius norm of the Jacobian of ``encode`` at ``x``,
    per sample, averaged over the batch (the contractive penalty), without forming the Jacobian.

    ``||J||_F^2 = E_v ||J v||^2`` for v ~ N(0, I) in input space; each J v is one forward-mode
    Jacobian-vector product (`torch.func.jvp`: about the cost of one more forward pass), and the
    result stays differentiable in the parameters. The encoder works on each sample alone, so one
    v over the batch gives every sample's estimate at once. Unbiased; its variance for one v is
    2 ||J^T J||_F^2, divided by ``samples``."""
    from torch.func import jvp

    total = x.new_zeros(())
    for _ in range(samples):
        v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        _, jv = jvp(encode, (x,), (v,))
        total = total + jv.float().pow(2).flatten(1).sum(dim=1).mean()
    return total / samples


def beta_schedule(beta: float, epoch: int, warmup_epochs: int) -> float:
    """Linear KL warm-up: 0 at epoch 0 up to ``beta`` after ``warmup_epochs``."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)


def shift_consistency(model, noisy: torch.Tensor, clean: torch.Tensor, *, kind: str, weight: float,
                      border: int = 8, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Reconstruction of ``noisy`` and of a copy rolled by one pixel along a random, non-empty set of
    spatial axes, plus ``weight`` x the mean squared disagreement of the two outputs (rolled back).

    A network on pixel-unshuffled sub-images (``shuffle`` > 1) is not shift-equivariant: its
    sub-images disagree slightly, which shows as a faint 2-pixel periodic pattern and costs PSNR
    (an ensemble over shifts gains what the disagreement loses). This term trains the disagreement
    away at no inference cost. ``border`` pixels on every side, where the roll wraps around, are
    left out of the rolled terms. ``pixel_weight``: as in `reconstruction`, for both reconstructions.
    """
    dims = tuple(range(2, noisy.ndim))
    shifts = torch.zeros(len(dims), dtype=torch.long)
    while not shifts.any():
        shifts = torch.randint(0, 2, (len(dims),))
    sh = tuple(int(v) for v in shifts)
    out = model(noisy)
    out_s = torch.roll(model(torch.roll(noisy, sh, dims)), tuple(-v for v in sh), dims)
    b = max(1, min(border, min(noisy.shape[2:]) // 4))
    inner = (..., *[slice(b, -b)] * len(dims))
    pw, pw_inner = (pixel_weight, pixel_weight[inner]) if pixel_weight is not None else (None, None)
    return (0.5 * (reconstruction(out, clean, kind=kind, pixel_weight=pw)
                   + reconstruction(out_s[inner], clean[inner], kind=kind, pixel_weight=pw_inner))
            + weight * F.mse_loss(out_s[inner], out[inner]))
