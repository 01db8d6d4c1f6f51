"""The contractive penalty's effect (issue #25 item 1): a sweep of its weight.

    python scripts/contractive_sweep.py [--weights 0,1e-3,1e-2,1e-1,1] [--steps 1000] [--out docs/benchmarks/contractive]

Trains the cae-mr-2d recipe (scripts/train_pretrained.py --no-ship) once per weight for --steps
steps into runs/cae-sweep/wW (skipped when runs/cae-sweep/wW/last.pt exists), then measures each
on the held-out T1's three 16-slice slabs (the MR benchmark's) at Rician 5%, seed 0
(`denoise.bench_contractive.contractive_row`): the code's sensitivity to small input
perturbations, ||J||_F^2 per 64x64 patch, fg PSNR. Writes OUT/results.csv, OUT/by_weight.csv and
OUT/sensitivity.png; `--shipped` measures the shipped cae-mr-2d at Rician 5% and 9% into OUT/shipped.csv.
About 3 minutes per weight at 1000 steps on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from denoise.bench_cases import T1_SLABS, t1_slabs
from denoise.bench_contractive import contractive_row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--weights", default="0,1e-3,1e-2,1e-1,1")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/contractive"))
    ap.add_argument("--shipped", action="store_true",
                    help="only measure the shipped cae-mr-2d (3000 steps) the same way, into OUT/shipped.csv")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shipped:
        _shipped(args)
        return
    runs = {}
    for w in args.weights.split(","):
        run = Path("runs") / "cae-sweep" / f"w{w}"
        if not (run / "last.pt").exists():
            subprocess.run([sys.executable, str(Path(__file__).parent / "train_pretrained.py"), "--model", "cae-mr-2d",
                            "--contractive-weight", w, "--steps", str(args.steps), "--no-ship",
                            "--run-name", f"cae-sweep/w{w}", "--data", str(args.data)], check=True)
        runs[w] = run / "last.pt"
    rows = []
    for w, ckpt in runs.items():
        for s, slab in zip(T1_SLABS, t1_slabs(args.data)):
            rows.append({"weight": float(w), "slab": s, **{k: v for k, v in contractive_row(ckpt, slab).items()
                                                           if k != "weight"}})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.round(5).to_csv(args.out / "results.csv", index=False)
    mean = table.groupby("weight")[["latent_sensitivity", "jacobian_frobenius2", "psnr_fg", "psnr_fg_noisy"]].mean()
    mean.round(4).to_csv(args.out / "by_weight.csv")
    print(mean.round(4).to_string())
    _plot(mean, args.out / "sensitivity.png")


def _shipped(args) -> None:
    from denoise.pretrained import PRETRAINED_DIR

    rows = []
    for noise in ("rician:0.05", "rician:0.09"):
        for s, slab in zip(T1_SLABS, t1_slabs(args.data)):
            rows.append({"noise": noise, "slab": s, **contractive_row(PRETRAINED_DIR / "cae-mr-2d.pt", slab, noise)})
    table = pd.DataFrame(rows).groupby(["noise", "weight"])[["latent_sensitivity", "jacobian_frobenius2", "psnr_fg",
                                                             "psnr_fg_noisy"]].mean().round(4)
    table.to_csv(args.out / "shipped.csv")
    print(table.to_string())


def _plot(mean: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [max(w, 1e-4) for w in mean.index]  # weight 0 drawn at 1e-4 on the log axis
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    ax[0].loglog(x, mean["latent_sensitivity"], "o-")
    ax[0].set_xlabel("contractive weight (0 drawn at 1e-4)")
    ax[0].set_ylabel("code change / input change")
    ax[1].semilogx(x, mean["psnr_fg"], "o-", label="cae")
    ax[1].axhline(float(mean["psnr_fg_noisy"].mean()), color="grey", ls="--", label="noisy input")
    ax[1].set_xlabel("contractive weight (0 drawn at 1e-4)")
    ax[1].set_ylabel("fg PSNR (dB), held-out T1, Rician 5%")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
