"""The seed's questions about autoencoders, answered with numbers on the same data.

    python scripts/autoencoder_questions.py [--steps 300]   # ~10 min on 2 CPU cores

1. Bottleneck size: a too-small (2), a good (16) and a too-large (64 channel) code of the same
   bottleneck AE: denoising PSNR on held-out patches, and latent smoothness (how evenly the
   decoded images change along a straight line between two codes: max step / mean step, 1 = even).
2. Linear AE vs PCA on 8x8 patches: principal angles and reconstruction MSE.
3. Plain AE trained without noise vs the DAE (same architecture), both fed noisy input.
4. AE vs VAE latent space: decode random N(0, I) codes; how far their intensity histograms are
   from real patches (1-D Wasserstein distance; lower = more scan-like), plus a PNG grid.
5. Noise-level mismatch: the same small DAE trained at one level (Rician 5%) and blind (1-9%),
   with the same budget, each tested at 1/3/5/7/9%.
Writes docs/benchmarks/ae_questions.md and ae_samples.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from denoise.config import ModelConfig, TrainConfig
from denoise.data import PatchSampler
from denoise.infer import load_model
from denoise.io import read_scan
from denoise.metrics import psnr
from denoise.recipes import MR_NORM, MR_TRAIN, load_training_scans
from denoise.train import fit, prepare_volumes

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    scans = load_training_scans(args.data, MR_TRAIN)
    held = read_scan(args.data / "nifti" / "mr_t1_electrodes_seg3d.nii.gz")
    base = TrainConfig(noise="rician:0.05", patch_size=32, batch_size=16, steps_per_epoch=args.steps // 5, epochs=5,
                       normalization=MR_NORM, val_patches=16, early_stop_patience=99, seed=0)
    test_vols, _ = prepare_volumes([held], base, 0)
    test = PatchSampler(test_vols, noise="rician:0.05", spatial_dims=2, patch_size=32, seed=99)
    noisy, clean = test.batch(64)
    lines = ["# Autoencoder questions (held-out T1 patches, Rician 5%, foreground-weighted 32x32 patches)", "",
             f"Command: `python scripts/autoencoder_questions.py --steps {args.steps} --threads {args.threads}`", ""]

    def train(cfg: ModelConfig, tcfg: TrainConfig):
        with tempfile.TemporaryDirectory() as tmp:
            fit(cfg, tcfg, scans, tmp, name="q", progress=False)
            return load_model(Path(tmp) / "best.pt", device="cpu").net

    def score(net) -> float:
        with torch.no_grad():
            out = net.predict(torch.from_numpy(noisy)).numpy()
        return float(np.mean([psnr(c[0], o[0], data_range=1.0) for c, o in zip(clean, out)]))

    noisy_psnr = float(np.mean([psnr(c[0], n[0], data_range=1.0) for c, n in zip(clean, noisy)]))
    lines += ["## 1. Bottleneck size (bottleneck AE, channels 16/32/64, no skips)", "",
              f"Noisy input: {noisy_psnr:.2f} dB.", "", "| code channels | PSNR (dB) | latent smoothness (max/mean step) |",
              "|---|---|---|"]
    nets = {}
    for k in (2, 16, 64):
        cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(16, 32, 64), skip=False, residual=False, latent_channels=k)
        net = nets[k] = train(cfg, base)
        lines.append(f"| {k} | {score(net):.2f} | {_smoothness(net, clean):.2f} |")
    lines += ["", "## 2. Linear AE vs PCA (8x8 patches, 16 components)", ""]
    lines += _linear_vs_pca(clean)
    lines += ["", "## 3. Plain AE (trained on clean input) vs DAE (same architecture, 16-channel code)", "",
              "| model | PSNR on noisy input (dB) |", "|---|---|"]
    cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(16, 32, 64), skip=False, residual=False, latent_channels=16)
    plain = train(cfg, replace(base, noise="gaussian:0"))
    lines += [f"| plain AE | {score(plain):.2f} |", f"| DAE | {score(nets[16]):.2f} |"]
    vae_cfg = ModelConfig(kind="vae", spatial_dims=2, channels=(16, 32, 64), residual=False, latent_channels=16, patch_size=32)
    vae = train(vae_cfg, replace(base, beta=1e-2, beta_warmup_epochs=2))
    lines += ["", "## 4. Decoding random codes: AE vs VAE", "",
              "| model | Wasserstein distance of intensity histograms to real patches (lower = more scan-like) |",
              "|---|---|"]
    real = clean.ravel()
    ae = nets[16]
    with torch.no_grad():
        z = torch.randn(16, 16, 8, 8, generator=torch.Generator().manual_seed(0))
        ae_s = ae.decode(z * ae.encode(torch.from_numpy(clean)).std()).numpy()
        vae_s = vae.sample(16, spatial_size=32, seed=0).numpy()
    lines += [f"| AE (codes ~ N(0, s^2), s = code std) | {wasserstein_distance(ae_s.ravel(), real):.3f} |",
              f"| VAE (codes ~ N(0, I)) | {wasserstein_distance(vae_s.ravel(), real):.3f} |", "",
              "![samples](ae_samples.png)", ""]
    _grid(clean[:8], ae_s[:8], vae_s[:8], args.out / "ae_samples.png")
    lines += _mismatch(train, scans, base, test_vols)
    (args.out / "ae_questions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _mismatch(train, scans, base: TrainConfig, test_vols) -> list[str]:
    levels = [0.01, 0.03, 0.05, 0.07, 0.09]
    cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(16, 32, 64))
    nets = {"fixed 5%": train(cfg, replace(base, noise="rician:0.05", patch_size=48)),
            "blind 1-9%": train(cfg, replace(base, noise="rician:0.01-0.09", patch_size=48))}
    lines = ["", "## 5. Noise-level mismatch (small U-Net DAE, same budget; held-out 48x48 patches)", "",
             "| model | " + " | ".join(f"Rician {lv:.0%}" for lv in levels) + " |", "|---|" + "---|" * len(levels)]
    cases = {}
    for lv in levels:
        test = PatchSampler(test_vols, noise=f"rician:{lv}", spatial_dims=2, patch_size=48, seed=7)
        cases[lv] = test.batch(64)
    rows = {"noisy input": [float(np.mean([psnr(c[0], n[0], data_range=1.0) for n, c in zip(*cases[lv])]))
                            for lv in levels]}
    for name, net in nets.items():
        with torch.no_grad():
            rows[name] = [float(np.mean([psnr(c[0], o[0], data_range=1.0) for o, c in
                                         zip(net.predict(torch.from_numpy(cases[lv][0])).numpy(), cases[lv][1])]))
                          for lv in levels]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for name, vals in rows.items()]
    return lines + ["", "PSNR in dB on the normalised scale (data range 1), mean over 64 foreground-weighted patches."]


def _smoothness(net, clean: np.ndarray) -> float:
    with torch.no_grad():
        a = net.encode(torch.from_numpy(clean[:8]))
        b = net.encode(torch.from_numpy(clean[8:16]))
        ratios = []
        for i in range(8):
            t = torch.linspace(0, 1, 9).view(-1, 1, 1, 1)
            path = net.decode((1 - t) * a[i : i + 1] + t * b[i : i + 1]).numpy()
            steps = np.sqrt(((path[1:] - path[:-1]) ** 2).mean(axis=(1, 2, 3)))
            ratios.append(steps.max() / max(steps.mean(), 1e-9))
    return float(np.mean(ratios))


def _linear_vs_pca(clean: np.ndarray) -> list[str]:
    from denoise.models import build_model

    p, k = 8, 16
    patches = clean[:, 0].reshape(len(clean), 4, p, 4, p).transpose(0, 1, 3, 2, 4).reshape(-1, p * p)
    patches = patches - patches.mean(0)
    x = torch.tensor(patches, dtype=torch.float32).reshape(-1, 1, p, p)
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind="linear", spatial_dims=2, patch_size=p, n_components=k))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2000):
        loss = ((net(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = np.linalg.qr(net.subspace().numpy())[0]
    _, _, vt = np.linalg.svd(patches, full_matrices=False)
    pca = vt[:k].T
    ang = np.degrees(np.arccos(np.clip(np.linalg.svd(learned.T @ pca, compute_uv=False), -1, 1)))
    pca_mse = float(((patches - patches @ pca @ pca.T) ** 2).mean())
    return [f"- principal angles between the linear AE's subspace and PCA's: max {ang.max():.2f} deg, "
            f"mean {ang.mean():.2f} deg", f"- reconstruction MSE: linear AE {float(loss):.3e}, PCA {pca_mse:.3e}"]


def _grid(real, ae, vae, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 8, figsize=(12, 5))
    for row, (label, imgs) in enumerate([("real", real), ("AE random", ae), ("VAE random", vae)]):
        for j in range(8):
            axes[row, j].imshow(imgs[j, 0], cmap="gray", vmin=0, vmax=1)
            axes[row, j].axis("off")
        axes[row, 0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
