"""Uncertainty maps measured (issue #26 section 2): flip spread vs actual error on held-out scans.

    python scripts/uncertainty_benchmark.py [--data ../shared/data] [--out docs/benchmarks/uncertainty]

Cases (none used for training): the held-out Seg3D T1's three 16-slice slabs (the MR benchmark's)
with Rician 5% and 9% through mr-2d and mr-3d, and the held-out GE CT colonography slices at 25%
dose through ct-2d; seed 0. Writes OUT/summary.csv (correlations, mean spread and error, per scan and case),
OUT/by_model.csv (their means per model and noise), OUT/bins.csv (calibration bins) and OUT/calibration.png. ~6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from denoise.bench_cases import T1_SLABS, t1_slabs
from denoise.bench_uncertainty import calibration_case
from denoise.io import read_scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/uncertainty"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    slabs = t1_slabs(args.data)
    ct = read_scan(args.data / "dicom" / "ge_ct_colonography_3slices")
    cases = [(f"t1_slab{s}", slab, noise, model) for s, slab in zip(T1_SLABS, slabs)
             for noise in ("rician:0.05", "rician:0.09") for model in ("mr-2d", "mr-3d")]
    cases.append(("ge_ct", ct, "lowdose:0.25", "ct-2d"))
    rows, bins = [], []
    for label, scan, noise, model in cases:
        r, b = calibration_case(scan, noise, model, seed=0)
        rows.append({"scan": label, **r})
        bins += [{"scan": label, **x} for x in b]
        print(label, noise, model, f"r={r['pearson']:.2f} baseline={r['baseline_pearson']:.2f}", flush=True)
    summary = pd.DataFrame(rows)
    summary.round(4).to_csv(args.out / "summary.csv", index=False)
    pd.DataFrame(bins).round(4).to_csv(args.out / "bins.csv", index=False)
    cols = ["pearson", "baseline_pearson", "ceiling_pearson", "pearson_expected", "baseline_pearson_expected",
            "spearman", "error_over_spread"]
    table = summary.groupby(["model", "noise"])[cols].mean().round(3)
    table.to_csv(args.out / "by_model.csv")
    print(table.to_string())
    _plot(pd.DataFrame(bins), args.out / "calibration.png")


def _plot(bins: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(bins.groupby(["model", "noise"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), squeeze=False)
    for ax, ((model, noise), g) in zip(axes[0], groups):
        for scan, s in g.groupby("scan"):
            ax.plot(s["mean_spread"], s["mean_abs_error"], "o-", ms=3, label=scan)
        top = float(max(g["mean_spread"].max(), 1e-9))
        k = float((g["mean_abs_error"] * g["voxels"]).sum() / (g["mean_spread"] * g["voxels"]).sum())
        xs = np.linspace(0, top, 10)
        ax.plot(xs, k * xs, "k--", lw=0.8, label=f"error = {k:.1f} x spread")
        ax.set_title(f"{model}, {noise}", fontsize=9)
        ax.set_xlabel("predicted spread (scan units)")
        ax.set_ylabel("observed mean |error| (scan units)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
