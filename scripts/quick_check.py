"""Held-out quality of retrained models (a run folder of scripts/train_all.sh) beside the shipped ones.

    bash scripts/train_all.sh --no-ship       # retrain every model into runs/quick/, nothing shipped
    python scripts/quick_check.py [--runs runs/quick] [--data ../shared/data] [--out runs/quick/check] [--other]
                                  [--levels rician:0.05,rician:0.09] [--noise-scale F]

Same cases, noise realisations and scoring as docs/benchmarks.md (scripts/benchmark.py): the
held-out T1's three 16-slice slabs at Rician 5/9% and the held-out GE CT at 25/10% dose, fg PSNR;
with --other also mr-2d on the other scanners' MR series (`benchmark.py --only other`'s cases).
BM3D with oracle sigma is copied from docs/benchmarks/{mr,ct}/results.csv where the noisy input is
identical (recomputed for the first four cases). ``--noise-scale F`` runs the retrained mr-2d (one
plane and three) told F x the noise level it estimates (an operating point to ship it with). Writes OUT/{mr,ct}/results.* and OUT/summary.md,
and prints the table: model, shipped, retrained, difference. (docs/benchmarks/quick/ holds the one
run of it that compared the 30-minute recipe with the 12-hour one it replaced, session 15.)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from denoise.bench_cases import T1_SLABS, copy_ge_ct, copy_other_mr, write_t1_slabs

ROOT = Path(__file__).resolve().parents[1]

from denoise.bench import run_benchmark  # noqa: E402
from denoise.models import bm3d_available  # noqa: E402

# (row label, shipped method, retrained method with {runs} for the run folder)
MR_PAIRS = [("mr-2d", "dae:mr-2d", "dae:{runs}/mr-2d/last.pt"),
            ("mr-2d along three planes (= mr-3d on this volume)", "dae:mr-2d:3planes", "dae:{runs}/mr-2d/last.pt:3planes"),
            ("mr-3d slab network", "dae:mr-3d:1plane", "dae:{runs}/mr-3d/last.pt"),
            ("vae-mr-2d", "vae:vae-mr-2d", "vae:{runs}/vae-mr-2d/last.pt"),
            ("sparse-mr-2d", "sparse:sparse-mr-2d", "sparse:{runs}/sparse-mr-2d/last.pt")]
CT_PAIRS = [("ct-2d", "dae:ct-2d", "dae:{runs}/ct-2d/last.pt")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=Path, default=Path("runs/quick"))
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "quick" / "check")
    p.add_argument("--levels", default="rician:0.05,rician:0.09", help="MR noise levels, comma-separated")
    p.add_argument("--other", action="store_true",
                   help="also the other scanners' MR series (benchmark.py --only other's cases; mr-2d only)")
    p.add_argument("--noise-scale", type=float, help="run the retrained mr-2d at this operating point (noise_scale)")
    args = p.parse_args(argv)
    bm3d = ["bm3d:oracle"] if bm3d_available() else []
    levels = args.levels.split(",")
    lines = ["| model | noise | shipped | retrained | difference | BM3D oracle |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for part, pairs, noises, cases in [
                ("mr", MR_PAIRS, levels, lambda d: write_t1_slabs(args.data, d, T1_SLABS)),
                ("ct", CT_PAIRS, ["lowdose:0.25", "lowdose:0.1"], lambda d: copy_ge_ct(args.data, d)),
                *([("other", MR_PAIRS[:1], levels, lambda d: copy_other_mr(args.data, d))]
                  if args.other else [])]:
            pairs = [(label, a, _scaled(b.format(runs=args.runs), args.noise_scale) if "/mr-2d/" in b else b.format(runs=args.runs))
                     for label, a, b in pairs]
            pairs = [(label, a, b) for label, a, b in pairs if Path(b.split(":")[1]).is_file()]  # runs done
            if not pairs:
                continue
            methods = ["noisy", *bm3d, *(m for _, a, b in pairs for m in (a, b))]
            run_benchmark(cases(Path(tmp) / part), noises, args.out / part, methods=methods, seed=0,
                          reuse=ROOT / "docs" / "benchmarks" / part / "results.csv")
            for png in (args.out / part).glob("*.png"):  # the figures are docs/benchmarks.md's
                png.unlink()
            fg = defaultdict(list)
            with open(args.out / part / "results.csv", newline="") as fh:
                for r in csv.DictReader(fh):
                    fg[(r["method"], r["noise"])].append(float(r["psnr_fg"]))
            for noise in noises:
                ref = f"{np.mean(fg[('bm3d:oracle', noise)]):.2f}" if fg[("bm3d:oracle", noise)] else "-"
                for label, a, b in pairs:
                    sa, sb = np.mean(fg[(a, noise)]), np.mean(fg[(b, noise)])
                    where = " (other scanners: mean of the 3 series)" if part == "other" else ""
                    lines.append(f"| {label}{where} | {noise} | {sa:.2f} | {sb:.2f} | {sb - sa:+.2f} | {ref} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(table)
    print(table)
    return 0


def _scaled(method: str, scale: float | None) -> str:
    """``method`` with the bench's ``noisescaleF`` option added (none without a scale)."""
    if scale is None:
        return method
    return method + ("+" if method.count(":") > 1 else ":") + f"noisescale{scale:g}"


if __name__ == "__main__":
    sys.exit(main())
