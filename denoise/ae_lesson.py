"""The autoencoder lesson's experiments and measures (issue #25 item 3): which models answer which
question (`lesson_runs`), and how each answer is measured. Compute only: training and files live in
`scripts/autoencoder_questions.py`; docs/autoencoders.md reads the results.

Every model is a small bottleneck network (three levels, 16/32/64 channels, the code at 1/4 of the
patch side, no skips) trained on 32x32 patches of the same MR scans, so that one thing changes per
question: the code size, the input noise, the KL weight, the L1 weight or the contractive weight.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from denoise.config import ModelConfig, TrainConfig
from denoise.metrics import psnr

__all__ = ["CODE_SIZES", "BETAS", "SPARSITY_WEIGHTS", "CONTRACTIVE_WEIGHTS", "lesson_runs", "reconstruct",
           "codes", "mean_psnr", "interpolation_evenness", "neighbour_agreement", "pca_basis", "pca_reconstruct",
           "linear_vs_pca", "sample_distance", "active_units", "matched_gaussian_codes", "kl_per_unit"]

CODE_SIZES = (1, 2, 4, 8, 16)  # code channels at 1/4 side: 1/16 ... 1 code value per pixel
BETAS = (1e-4, 1e-3, 1e-2, 1e-1)  # KL weight per latent unit, against the per-pixel MSE
SPARSITY_WEIGHTS = (0.0, 1e-2, 1e-1)  # L1 weight on the mean code activation
CONTRACTIVE_WEIGHTS = (1e-2, 1e-1, 1.0)  # weight 0 is the plain AE of the same code size
PATCH = 32
CHANNELS = (16, 32, 64)


def lesson_runs(base: TrainConfig) -> dict[str, tuple[ModelConfig, TrainConfig]]:
    """Every model of the lesson by name, on top of ``base`` (patch size, steps, normalisation).

    ``ae-K``: plain AE (clean in, clean out) with a K-channel code; ``dae-K``: the same network fed
    Rician 5% noise; ``vae-B``: VAE with an 8-channel code and KL weight B; ``sparse-W``: ReLU code
    of 16 channels with L1 weight W; ``cae-W``: the 8-channel AE with contractive weight W."""
    clean = replace(base, noise="gaussian:0")

    def net(kind: str, k: int) -> ModelConfig:
        return ModelConfig(kind=kind, spatial_dims=2, channels=CHANNELS, skip=False, residual=False,
                           latent_channels=k, patch_size=base.patch_size)

    runs = {f"ae-{k}": (net("dae", k), clean) for k in CODE_SIZES}
    runs.update({f"dae-{k}": (net("dae", k), replace(base, noise="rician:0.05")) for k in (4, 16)})
    runs.update({f"vae-{b:g}": (net("vae", 8), replace(clean, beta=b)) for b in BETAS})
    runs.update({f"sparse-{w:g}": (net("sparse", 16), replace(clean, sparsity_weight=w)) for w in SPARSITY_WEIGHTS})
    runs.update({f"cae-{w:g}": (net("cae", 8), replace(clean, contractive_weight=w)) for w in CONTRACTIVE_WEIGHTS})
    return runs


@torch.no_grad()
def reconstruct(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's output for patches ``x`` (N, 1, H, W); a VAE decodes its posterior mean."""
    return net.predict(torch.from_numpy(x)).numpy()


@torch.no_grad()
def codes(net: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    """The bottleneck code of ``x``: a VAE's posterior mean, otherwise the encoder's output."""
    z = net.encode(torch.from_numpy(x))
    return z[0] if isinstance(z, tuple) else z


def mean_psnr(out: np.ndarray, clean: np.ndarray) -> float:
    """Mean PSNR over patches (N, 1, H, W) on the normalised scale, data range 1."""
    return float(np.mean([psnr(c[0], o[0], data_range=1.0) for c, o in zip(clean, out)]))


@torch.no_grad()
def interpolation_evenness(net: torch.nn.Module, a: np.ndarray, b: np.ndarray, steps: int = 9) -> float:
    """How evenly decoded images change along straight lines between the codes of ``a[i]`` and
    ``b[i]``: the mean over pairs of (largest step / mean step), RMS image change per step;
    1 = a perfectly even path, large = the path jumps (a region of code space that decodes badly)."""
    za, zb = codes(net, a), codes(net, b)
    t = torch.linspace(0, 1, steps).view(-1, *([1] * (za.ndim - 1)))
    ratios = []
    for i in range(len(za)):
        path = net.decode((1 - t) * za[i : i + 1] + t * zb[i : i + 1]).numpy()
        step = np.sqrt(((path[1:] - path[:-1]) ** 2).mean(axis=tuple(range(1, path.ndim))))
        ratios.append(step.max() / max(step.mean(), 1e-12))
    return float(np.mean(ratios))


def neighbour_agreement(z: np.ndarray, images: np.ndarray, k: int = 5) -> float:
    """Mean fraction of each patch's ``k`` nearest neighbours in code space (Euclidean) that are
    also among its ``k`` nearest in image space: 1 = the code keeps which patches look alike."""
    def knn(a: np.ndarray) -> np.ndarray:
        a = a.reshape(len(a), -1).astype(np.float64)
        d = ((a[:, None] - a[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return np.argsort(d, axis=1)[:, :k]

    kz, ki = knn(z), knn(images)
    return float(np.mean([len(set(p) & set(q)) / k for p, q in zip(kz, ki)]))


def pca_basis(train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the first ``k`` principal directions (columns) of flattened training patches."""
    x = train.reshape(len(train), -1).astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k].T


def pca_reconstruct(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Project patches on the PCA subspace and back (the best linear code of that size)."""
    flat = x.reshape(len(x), -1).astype(np.float64) - mean
    return ((flat @ basis) @ basis.T + mean).reshape(x.shape).astype(np.float32)


def linear_vs_pca(clean: np.ndarray, *, edge: int = 8, k: int = 16, steps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Train the linear AE on ``edge``-pixel tiles of ``clean`` and compare its subspace with PCA's:
    the largest and mean principal angle (degrees) and both reconstruction MSEs."""
    from denoise.models import build_model

    n, side = len(clean), clean.shape[-1] // edge
    tiles = clean[:, 0, : side * edge, : side * edge].reshape(n, side, edge, side, edge)
    tiles = tiles.transpose(0, 1, 3, 2, 4).reshape(-1, edge * edge)
    tiles = tiles - tiles.mean(0)
    x = torch.tensor(tiles, dtype=torch.float32).reshape(-1, 1, edge, edge)
    torch.manual_seed(seed)
    net = build_model(ModelConfig(kind="linear", spatial_dims=2, patch_size=edge, n_components=k))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = ((net(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = np.linalg.qr(net.subspace().detach().numpy())[0]
    _, pca = pca_basis(tiles, k)
    cos = np.clip(np.linalg.svd(learned.T @ pca, compute_uv=False), -1, 1)
    ang = np.degrees(np.arccos(cos))
    pca_mse = float(((tiles - tiles @ pca @ pca.T) ** 2).mean())
    return {"max_angle": float(ang.max()), "mean_angle": float(ang.mean()), "linear_mse": float(loss.detach()),
            "pca_mse": pca_mse}


def _gradient_magnitude(x: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(x[:, 0], axis=(1, 2))
    return np.hypot(gy, gx)


def sample_distance(samples: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """How unlike real patches decoded samples are: 1-D Wasserstein distances between the
    intensity histograms and between the gradient-magnitude histograms (texture and sharpness:
    blurred samples have too few strong gradients), and the ratio of mean gradient magnitudes
    (1 = as sharp as real patches)."""
    gs, gr = _gradient_magnitude(samples), _gradient_magnitude(real)
    return {"intensity": float(wasserstein_distance(samples.ravel(), real.ravel())),
            "gradient": float(wasserstein_distance(gs.ravel(), gr.ravel())),
            "sharpness": float(gs.mean() / max(gr.mean(), 1e-12))}


@torch.no_grad()
def kl_per_unit(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Mean KL(q(z|x) || N(0, 1)) per latent channel (nats per code value), over patches and positions."""
    mu, logvar = net.encode(torch.from_numpy(x))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.mean(dim=(0, *range(2, kl.ndim))).numpy()


def active_units(net: torch.nn.Module, x: np.ndarray, threshold: float = 0.01) -> float:
    """Fraction of a VAE's latent channels that carry information (mean KL above ``threshold``
    nats); the rest collapsed to the prior (the price of a large KL weight)."""
    return float((kl_per_unit(net, x) > threshold).mean())


def matched_gaussian_codes(z: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random codes for a plain AE, drawn per channel from a Gaussian with the mean and std
    its codes of real patches have (the fairest 'sample from an AE' without a prior)."""
    dims = (0, *range(2, z.ndim))
    mean, std = z.mean(dim=dims, keepdim=True), z.std(dim=dims, keepdim=True)
    gen = torch.Generator().manual_seed(seed)
    return mean + std * torch.randn((n, *z.shape[1:]), generator=gen)
