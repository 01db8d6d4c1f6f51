"""The autoencoder lesson's questions, answered by models trained to convergence (issue #25 item 3).

    python scripts/autoencoder_questions.py [--steps 2000]   # ~60 min on 2 CPU cores

Trains the models of `denoise.ae_lesson.lesson_runs` on 32x32 patches of the MR training scans
(recipes MR_TRAIN + MR_EXTRA), each into runs/ae-lesson/NAME (a finished run is reused, so an
interrupted study resumes), then measures every answer on held-out scans (an unseen subject's T1 and
an unseen MS patient's FLAIR and T2): bottleneck size vs reconstruction and latent structure, AE vs
PCA at the same code size, linear AE = PCA, plain AE vs DAE on noisy input, VAE samples vs an AE's
random codes and the KL-weight sweep, sparsity vs L1 weight, sensitivity vs contractive weight, and
interpolation between two real slices (AE vs VAE). Writes docs/benchmarks/ae_questions.md and
figures in docs/benchmarks/ae_lesson/.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from denoise import ae_lesson as L
from denoise.config import TrainConfig
from denoise.data import PatchSampler
from denoise.infer import load_model
from denoise.io import read_scan
from denoise.models import latent_sensitivity, sparsity_fraction
from denoise.recipes import MR_EXTRA, MR_NORM, MR_TRAIN, load_training_scans
from denoise.train import fit, prepare_volumes

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ["nifti/mr_t1_electrodes_seg3d.nii.gz", "nifti/mr_ms_patient12_flair.nii.gz",
            "nifti/mr_ms_patient12_t2w.nii.gz"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=2000, help="training steps per model")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "ae-lesson")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--only", default="", help="comma-separated run names (default: all)")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = TrainConfig(patch_size=L.PATCH, batch_size=32, steps_per_epoch=args.steps // 10, epochs=10, lr=2e-3,
                       normalization=MR_NORM, val_patches=32, early_stop_patience=99, beta_warmup_epochs=3,
                       seed=0, amp=False)
    runs = L.lesson_runs(base)
    names = [n for n in args.only.split(",") if n] or list(runs)
    todo = [n for n in names if not (args.runs / n / "summary.json").exists()]
    if todo:
        scans = load_training_scans(args.data, MR_TRAIN + MR_EXTRA)
        for n in todo:
            print(f"training {n} ({args.steps} steps)", flush=True)
            fit(*runs[n], scans, args.runs / n, name=n, progress=False)
    if args.train_only:
        return 0
    nets = {n: load_model(args.runs / n / "best.pt", device="cpu").net.eval() for n in runs}
    held = [read_scan(args.data / f) for f in HELD_OUT]
    vols, _ = prepare_volumes(held, base, 0)
    clean_parts, noisy_parts = [], []
    for i, v in enumerate(vols):
        noisy, clean = PatchSampler([v], noise="rician:0.05", spatial_dims=2, patch_size=L.PATCH, seed=99 + i).batch(64)
        clean_parts.append(clean)
        noisy_parts.append(noisy)
    clean, noisy = np.concatenate(clean_parts), np.concatenate(noisy_parts)
    train_vols, _ = prepare_volumes(load_training_scans(args.data, MR_TRAIN + MR_EXTRA[:3]), base, 0)
    train_patches = PatchSampler(train_vols, noise="gaussian:0", spatial_dims=2, patch_size=L.PATCH, seed=5).batch(6000)[1]
    figs = args.out / "ae_lesson"
    figs.mkdir(parents=True, exist_ok=True)
    lines = _header(args, runs, noisy, clean)
    lines += _bottleneck(nets, clean, train_patches, figs)
    lines += _linear(clean)
    lines += _plain_vs_dae(nets, noisy, clean)
    lines += _vae(nets, clean, figs)
    lines += _sparse(nets, clean)
    lines += _contractive(nets, noisy, clean)
    lines += _interpolation(nets, vols[0], figs)
    lines += _convergence(args.runs, runs)
    (args.out / "ae_questions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _header(args, runs, noisy, clean) -> list[str]:
    return ["# Autoencoder questions, trained to convergence (issue #25 item 3)", "",
            f"Command: `python scripts/autoencoder_questions.py --steps {args.steps}` "
            f"({len(runs)} models, `denoise.ae_lesson.lesson_runs`; 32x32 patches, batch 32, Adam 2e-3 with "
            "a cosine schedule, 10 validations; the best validation checkpoint is measured).", "",
            "Training: the MR recipe scans (MR_TRAIN + MR_EXTRA: 15 volumes, T1/T2/FLAIR/PD of 9 subjects). "
            f"Test: {len(clean)} foreground-weighted 32x32 patches, 64 from each held-out scan ("
            + ", ".join(Path(f).name for f in HELD_OUT) + "; no subject of the training set). "
            "PSNR in dB on the percentile-normalised scale (data range 1, whole patch). "
            f"Rician 5% noisy input: {L.mean_psnr(noisy, clean):.2f} dB.", ""]


def _bottleneck(nets, clean, train_patches, figs: Path) -> list[str]:
    rows, ae_db, pca_db = [], [], []
    half = len(clean) // 2
    for k in L.CODE_SIZES:
        net = nets[f"ae-{k}"]
        n_code = int(np.prod(L.codes(net, clean[:1]).shape[1:]))
        mean, basis = L.pca_basis(train_patches, n_code)
        ae, pc = L.mean_psnr(L.reconstruct(net, clean), clean), L.mean_psnr(L.pca_reconstruct(clean, mean, basis), clean)
        ae_db.append(ae)
        pca_db.append(pc)
        z = L.codes(net, clean).numpy()
        vs_pca = f"{pc:.2f} | {ae - pc:+.2f}" if np.isfinite(pc) else "lossless (full rank) | -"
        rows.append(f"| {k} | {n_code} ({n_code / L.PATCH ** 2:.3g}) | {ae:.2f} | {vs_pca} | "
                    f"{L.neighbour_agreement(z, clean):.2f} | {L.interpolation_evenness(net, clean[:16], clean[half:half + 16]):.2f} |")
    pca_db = [v if np.isfinite(v) else np.nan for v in pca_db]  # full rank: lossless, not drawn
    _plot_lines(figs / "bottleneck.png", [k * 64 for k in L.CODE_SIZES], {"conv AE": ae_db, "PCA": pca_db},
                "code values per 32x32 patch", "reconstruction PSNR (dB)", logx=True)
    return ["## 1. Bottleneck size, and a nonlinear AE against PCA at the same code size", "",
            "Plain AEs (clean in, clean out) with a code of K channels at 8x8 positions per 32x32 patch; PCA "
            "with as many components, fitted on 6000 training patches. neighbours: mean fraction of each test "
            "patch's 5 nearest neighbours in code space that are also among its 5 nearest in image space "
            "(1 = the code keeps which patches look alike); evenness: largest / mean image change per step "
            "along straight lines between two patches' codes (1 = even).", "",
            "| K | code values (per pixel) | AE PSNR | PCA PSNR | AE - PCA | neighbours | evenness |",
            "|---|---|---|---|---|---|---|", *rows, "", "![bottleneck](ae_lesson/bottleneck.png)", ""]


def _linear(clean) -> list[str]:
    r = L.linear_vs_pca(clean)
    return ["## 2. The linear AE is PCA", "",
            "Linear AE (no nonlinearity, 16-value code) trained by Adam on the test patches' 8x8 tiles; its "
            f"subspace against PCA's: principal angles max {r['max_angle']:.2f} deg, mean {r['mean_angle']:.2f} deg; "
            f"reconstruction MSE {r['linear_mse']:.3e} vs PCA {r['pca_mse']:.3e}.", ""]


def _plain_vs_dae(nets, noisy, clean) -> list[str]:
    rows = [f"| noisy input | {L.mean_psnr(noisy, clean):.2f} | |"]
    for k in (4, 16):
        plain = L.mean_psnr(L.reconstruct(nets[f"ae-{k}"], noisy), clean)
        dae = L.mean_psnr(L.reconstruct(nets[f"dae-{k}"], noisy), clean)
        rows.append(f"| code {k} channels | {plain:.2f} | {dae:.2f} |")
    return ["## 3. Plain AE vs denoising AE, both fed Rician 5% input", "",
            "Same network and code; the plain AE learned clean -> clean, the DAE noisy -> clean.", "",
            "| | plain AE | DAE |", "|---|---|---|", *rows, ""]


def _vae(nets, clean, figs: Path) -> list[str]:
    ae = nets["ae-8"]
    z = L.codes(ae, clean)
    with torch.no_grad():
        ae_s = ae.decode(L.matched_gaussian_codes(z, 64)).numpy()
    d = L.sample_distance(ae_s, clean)
    rows = [f"| plain AE, codes ~ N(its code mean, std) | | | {d['intensity']:.3f} | {d['gradient']:.3f} | {d['sharpness']:.2f} |"]
    samples, recon_db = {"real": clean[:8], "AE random": ae_s[:8]}, []
    for b in L.BETAS:
        vae = nets[f"vae-{b:g}"]
        s = vae.sample(64, spatial_size=L.PATCH, seed=0).numpy()
        d = L.sample_distance(s, clean)
        db = L.mean_psnr(L.reconstruct(vae, clean), clean)
        recon_db.append(db)
        rows.append(f"| VAE beta {b:g}, codes ~ N(0, I) | {db:.2f} | {L.active_units(vae, clean):.2f} | {d['intensity']:.3f} | "
                    f"{d['gradient']:.3f} | {d['sharpness']:.2f} |")
        samples[f"VAE beta {b:g}"] = s[:8]
    _grid(samples, figs / "samples.png")
    return ["## 4. Sampling: a VAE's prior against a plain AE's random codes, and the KL weight", "",
            "8-channel codes. Reconstruction PSNR: clean test patches through the posterior mean. active: "
            "fraction of latent channels with mean KL > 0.01 nats. Distances of 64 decoded samples to the "
            "real test patches: Wasserstein distance of intensity and of gradient-magnitude histograms "
            "(lower = more scan-like); sharpness = samples' mean gradient / real patches' (1 = as sharp).", "",
            "| model | recon PSNR | active | intensity dist. | gradient dist. | sharpness |", "|---|---|---|---|---|---|",
            *rows, "", "![samples](ae_lesson/samples.png)", ""]


def _sparse(nets, clean) -> list[str]:
    rows = []
    for w in L.SPARSITY_WEIGHTS:
        net = nets[f"sparse-{w:g}"]
        z = L.codes(net, clean)
        rows.append(f"| {w:g} | {sparsity_fraction(z):.2f} | {float((z.abs().amax(dim=(0, 2, 3)) < 1e-3).float().mean()):.2f} | "
                    f"{L.mean_psnr(L.reconstruct(net, clean), clean):.2f} |")
    return ["## 5. Sparse AE: near-zero code values vs the L1 weight", "",
            "16-channel ReLU code. near-zero: fraction of code values below 1e-3 on test patches; dead: "
            "fraction of channels never above 1e-3.", "",
            "| L1 weight | near-zero | dead channels | recon PSNR |", "|---|---|---|---|", *rows, ""]


def _contractive(nets, noisy, clean) -> list[str]:
    rows = []
    x = torch.from_numpy(clean)
    for name in ["ae-8"] + [f"cae-{w:g}" for w in L.CONTRACTIVE_WEIGHTS]:
        net = nets[name]
        sens = latent_sensitivity(lambda t, n=net: n.encode(t), x)
        rows.append(f"| {name.replace('ae-8', '0 (plain AE)').replace('cae-', '')} | {sens:.4f} | "
                    f"{L.mean_psnr(L.reconstruct(net, clean), clean):.2f} | {L.mean_psnr(L.reconstruct(net, noisy), clean):.2f} |")
    return ["## 6. Contractive AE: the code's sensitivity vs the penalty weight", "",
            "8-channel code, trained clean -> clean. sensitivity: ||code(x + d) - code(x)|| / ||d|| for small "
            "random d (`denoise.models.latent_sensitivity`).", "",
            "| weight | sensitivity | recon PSNR (clean input) | PSNR on Rician 5% input |", "|---|---|---|---|", *rows, ""]


def _interpolation(nets, vol: np.ndarray, figs: Path) -> list[str]:
    z0 = vol.shape[0]
    a = vol[int(z0 * 0.45)][None, None].copy()
    b = vol[int(z0 * 0.60)][None, None].copy()
    strips, lines = {}, []
    for label, name in (("AE", "ae-8"), ("VAE", "vae-0.001")):
        net = nets[name]
        with torch.no_grad():
            za, zb = L.codes(net, a), L.codes(net, b)
            t = torch.linspace(0, 1, 7).view(-1, 1, 1, 1)
            path = net.decode((1 - t) * za + t * zb).numpy()[..., : a.shape[-2], : a.shape[-1]]
        strips[f"{label} ({name})"] = path
        lines.append(f"- {label} ({name}): evenness {L.interpolation_evenness(net, a, b, steps=7):.2f}")
    _grid(strips, figs / "interpolation.png", size=2.0)
    return ["## 7. Interpolating between two real slices: AE vs VAE", "",
            f"Slices {int(z0 * 0.45)} and {int(z0 * 0.60)} of the held-out T1, whole (fully convolutional models), "
            "7 points on the straight line between their codes.", "", *lines, "",
            "![interpolation](ae_lesson/interpolation.png)", ""]


def _convergence(run_dir: Path, runs) -> list[str]:
    rows = []
    for n in runs:
        with open(run_dir / n / "metrics.csv") as f:
            v = [float(r["val_psnr"]) for r in csv.DictReader(f) if r.get("val_psnr")]
        tail = max(len(v) // 5, 1)
        rows.append(f"| {n} | {v[0]:.2f} | {v[-1]:.2f} | {v[-1] - v[-tail - 1]:+.2f} |")
    return ["## Convergence", "", "Validation PSNR (dB; the training noise on validation patches of a held-back "
            "training scan) at the first and last of the 10 validations, and its change over the last fifth of "
            "training (small = converged at this schedule).", "",
            "| run | first | last | change, last fifth |", "|---|---|---|---|", *rows, ""]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_lines(path: Path, x, series: dict, xlabel: str, ylabel: str, logx: bool = False) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, y in series.items():
        ax.plot(x, y, marker="o", label=label)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _grid(rows: dict[str, np.ndarray], path: Path, size: float = 1.2) -> None:
    plt = _pyplot()
    ncol = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(size * ncol, size * len(rows) + 0.3), squeeze=False)
    for r, (label, imgs) in enumerate(rows.items()):
        for j in range(ncol):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
