"""Anomaly maps on real MS lesions (issue #25 item 2): AUROC, AUPRC and best Dice per scan and method.

    python scripts/anomaly_benchmark.py [--data ../shared/data] [--out docs/benchmarks/anomaly]

For each MS patient in ../shared/data (01, 03, 04, 12): a lesion mask from the FLAIR by the rule of
`denoise.bench_anomaly` (an overlay per patient, OUT/mask_patientNN.png, to check it by eye), then
every method of `denoise.bench_anomaly.ANOMALY_METHODS` on the FLAIR and on the T2 (the FLAIR mask
carried into the T2's grid by the affines). Writes OUT/results.csv (one row per scan and method; the
column seen_in_training says whether that model's training files held this scan, read from the
checkpoint), OUT/summary.csv (means over the scans no model saw) and OUT/maps.png (one slice's maps).
About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from denoise import load_model
from denoise.bench_anomaly import ANOMALY_METHODS, MIN_LESION_VOXELS, anomaly_rows, carry_mask, flair_lesion_mask
from denoise.io import read_scan

PATIENTS = ["01", "03", "04", "12"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/anomaly"))
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=CKPT",
                    help="also score this VAE checkpoint (residual and KL rows), e.g. an experiment run")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    methods = list(ANOMALY_METHODS)
    for item in args.extra:
        label, _, ckpt = item.partition("=")
        methods += [(label, ckpt, "residual", "bright"), (f"{label}:kl", ckpt, "kl", "bright")]
    names = sorted({m for _, m, _, _ in methods if m})
    models = {n: load_model(n, device="cpu") for n in names}
    seen = {n: set(m.info.get("data", {}).get("files", [])) for n, m in models.items()}
    rows, figure = [], None
    for p in PATIENTS:
        flair_rel = f"nifti/mr_ms_patient{p}_flair.nii.gz"
        flair = read_scan(args.data / flair_rel)
        lesions, region = flair_lesion_mask(flair.array)
        _overlay(flair.array, lesions, region, args.out / f"mask_patient{p}.png", f"patient {p} FLAIR")
        if lesions.sum() < MIN_LESION_VOXELS:
            print(f"patient {p}: {int(lesions.sum())} lesion voxels by the rule, fewer than {MIN_LESION_VOXELS}: not scored")
            continue
        scans = [(flair_rel, flair, lesions, region)]
        t2_rel = f"nifti/mr_ms_patient{p}_t2w.nii.gz"
        if (args.data / t2_rel).exists():
            t2 = read_scan(args.data / t2_rel)
            scans.append((t2_rel, t2, carry_mask(lesions, flair.affine, t2.array.shape, t2.affine),
                          carry_mask(region, flair.affine, t2.array.shape, t2.affine)))
        for rel, scan, les, reg in scans:
            got, maps = anomaly_rows(scan, les, reg, models, methods=methods, label=rel)
            for r, (_, model, _, _) in zip(got, methods):
                r.update(lesion_voxels=int(les.sum()), seen_in_training=bool(model) and rel in seen[model])
            rows += got
            print(pd.DataFrame(got)[["scan", "method", "auroc", "auprc", "best_dice"]].round(3).to_string(index=False))
            if p == "12" and "flair" in rel:
                figure = (scan.array, les, maps)
    df = pd.DataFrame(rows)
    df.round(4).to_csv(args.out / "results.csv", index=False)
    unseen = df[~df["seen_in_training"]]
    summary = unseen.groupby("method", sort=False)[["auroc", "auprc", "best_dice"]].agg(["mean", "count"]).round(3)
    summary.to_csv(args.out / "summary.csv")
    print(summary.to_string())
    if figure is not None:
        _maps_figure(*figure, args.out / "maps.png")


def _overlay(a: np.ndarray, lesions: np.ndarray, region: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zs = np.flatnonzero(region.any(axis=(1, 2)))
    picks = np.linspace(zs[0], zs[-1], 6).astype(int)
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    hi = float(np.percentile(a[a > 0], 99.5))
    for ax, z in zip(axes, picks):
        ax.imshow(a[z], cmap="gray", vmin=0, vmax=hi)
        ax.contour(region[z], levels=[0.5], colors="y", linewidths=0.4)
        ax.contour(lesions[z], levels=[0.5], colors="r", linewidths=0.7)
        ax.set_title(f"slice {z}")
        ax.axis("off")
    fig.suptitle(f"{title}: scored region (yellow), reference lesions (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _maps_figure(a: np.ndarray, lesions: np.ndarray, maps: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = int(np.argmax(lesions.sum(axis=(1, 2))))
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(3 * (len(maps) + 1), 3.3))
    axes[0].imshow(a[z], cmap="gray", vmin=0, vmax=float(np.percentile(a[a > 0], 99.5)))
    axes[0].contour(lesions[z], levels=[0.5], colors="r", linewidths=0.6)
    axes[0].set_title(f"FLAIR slice {z}")
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(m[z], cmap="magma", vmin=0, vmax=float(np.percentile(m[z], 99.7)) + 1e-6)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


if __name__ == "__main__":
    main()
