"""Compare two folders of scripts/refactor_check.sh: output pixels, manifest columns, bench scores, trained weights.

    python scripts/refactor_compare.py BEFORE AFTER     # prints OK/DIFF per comparison; exit 1 on any difference
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch

from denoise.io import read_scan

MANIFEST = ("status", "output", "sigma_before", "sigma_after", "noise_corr", "pattern_ratio", "model_hash", "shape", "kind")
TIMINGS = ("seconds", "voxels_per_s", "peak_mb")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def compare(a: Path, b: Path) -> list[tuple[bool, str]]:
    """(same, what) for every comparison between the two folders."""
    out = []
    for run in sorted(p.name for p in a.iterdir() if (p / "manifest.csv").exists()):
        ra = {r["input"]: r for r in _rows(a / run / "manifest.csv")}
        rb = {r["input"]: r for r in _rows(b / run / "manifest.csv")}
        out.append((ra.keys() == rb.keys(), f"{run}: manifest inputs"))
        for k in ra.keys() & rb.keys():
            out += [(False, f"{run} {k} {c}: {ra[k].get(c)} vs {rb[k].get(c)}") for c in MANIFEST if ra[k].get(c) != rb[k].get(c)]
            for col in ("output", "noise_map", "uncertainty"):
                if ra[k].get(col):
                    x, y = read_scan(a / run / ra[k][col]).array, read_scan(b / run / rb[k][col]).array
                    out.append((x.shape == y.shape and np.array_equal(x, y), f"{run} {ra[k][col]} pixels"))
    ba, bb = _rows(a / "bench" / "results.csv"), _rows(b / "bench" / "results.csv")
    cols = [c for c in ba[0] if c not in TIMINGS]
    out.append(([[r[c] for c in cols] for r in ba] == [[r[c] for c in cols] for r in bb], f"bench results.csv, {len(ba)} rows"))
    for t in sorted(p.name for p in a.iterdir() if p.name.startswith("train-") and p.is_dir()):
        sa = torch.load(a / t / "best.pt", weights_only=True)["state_dict"]
        sb = torch.load(b / t / "best.pt", weights_only=True)["state_dict"]
        out.append((sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), f"{t} best.pt weights"))
        ma, mb = ([{k: v for k, v in r.items() if k != "seconds"} for r in _rows(d / t / "metrics.csv")] for d in (a, b))
        out.append((ma == mb, f"{t} metrics.csv"))
    return out


def main(argv: list[str]) -> int:
    results = compare(Path(argv[0]), Path(argv[1]))
    for same, what in results:
        print("OK  " if same else "DIFF", what)
    bad = sum(not same for same, _ in results)
    print(f"{len(results)} comparisons, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
