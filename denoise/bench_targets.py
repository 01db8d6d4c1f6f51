"""The issues' quality and speed targets beside what the benchmarks measured, each with met / not met.

Compute only: reads the benchmarks' results.csv files and the speed measures, writes nothing; the
markdown table goes into docs/benchmarks.md ("Targets") by ``scripts/write_benchmarks_doc.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from denoise.bench import paired_difference

__all__ = ["targets_table", "lesion_targets"]

# (part, noise, method) -> that method's results.csv rows (one per scan)
Rows = dict[tuple[str, str, str], list[dict]]


def _pct(noise: str) -> str:
    return f"{float(noise.split(':')[1]) * 100:g}%"


def _read_rows(bench_dir: Path) -> Rows:
    rows: Rows = {}
    for part in ("mr", "mr3d", "ct", "ctother"):
        path = bench_dir / part / "results.csv"
        if path.exists():
            with open(path, newline="") as fh:
                for r in csv.DictReader(fh):
                    rows.setdefault((part, r["noise"], r["method"]), []).append(r)
    return rows


def targets_table(bench_dir: Path, speed_path: Path) -> str:
    """The targets of issues #3 and #31 as a markdown table: each quality target is a paired fg-PSNR
    difference over the benchmark's scans (mean and bootstrap 95% CI, `denoise.bench.paired_difference`),
    each speed target a measure of ``speed_path`` (scripts/bench_speed.py); "not run" where the
    benchmark that measures it has not written its results."""
    rows = _read_rows(bench_dir)
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else {}
    lines = ["| target | measured | |", "|---|---|---|"]

    def diff(part, noise, method, base, need, label):
        if (part, noise, method) not in rows or (part, noise, base) not in rows:
            return lines.append(f"| {label} | not run | |")
        m, lo, hi = paired_difference(rows[(part, noise, method)], rows[(part, noise, base)])
        verdict = "" if need is None else "met" if m >= need else "not met"  # need None: reported, not a target
        lines.append(f"| {label} | {m:+.2f} dB [{lo:+.2f}, {hi:+.2f}] | {verdict} |")

    def fast(key, limit, unit, label):
        v = speed.get(key)
        lines.append(f"| {label} | {v} {unit} | {'met' if v is not None and v <= limit else 'not met'} |" if v is not None
                     else f"| {label} | not run | |")

    for noise in ("rician:0.05", "rician:0.09"):
        level = _pct(noise)
        diff("mr", noise, "dae:mr-2d", "bm3d:oracle", 1e-9, f"must: mr-2d above BM3D (oracle sigma) at Rician {level}")
        for base in ("nlm:oracle", "gaussian:oracle"):
            diff("mr", noise, "dae:mr-2d", base, 0.5, f"must: mr-2d well above {base} at Rician {level} (read: by >= 0.5 dB)")
        diff("mr", noise, "dae:mr-3d", "dae:mr-2d", 1e-9, f"should: mr-3d above mr-2d at Rician {level}")
    diff("ct", "lowdose:0.25", "dae:ct-2d", "bm3d:oracle", 1e-9, "must: ct-2d above BM3D (oracle sigma) at 25% dose")
    diff("ct", "lowdose:0.25", "dae:ct-2d", "bm3d", 1e-9, "must (#31): ct-2d above BM3D (estimated sigma) at 25% dose, "
                                                          "held-out GE abdomen")
    diff("ctother", "lowdose:0.25", "dae:ct-2d", "bm3d", 1e-9, "must (#31): ct-2d above BM3D (estimated sigma) at 25% "
                                                               "dose, held-out Philips 4D-CT thorax (3 slabs)")
    diff("mr3d", "rician:0.05", "dae:mr-3d", "bm4d:oracle", -0.3, "must (#31): mr-3d within 0.3 dB of BM4D (oracle sigma) "
                                                                   "at Rician 5%")
    diff("mr3d", "rician:0.09", "dae:mr-3d", "bm4d:oracle", 0.0, "must (#31): mr-3d at least level with BM4D (oracle sigma) "
                                                                  "at Rician 9%")
    for noise in ("rician:0.05", "rician:0.09"):  # reported: mr-3d's PSNR-best operating point
        diff("mr3d", noise, "dae:mr-3d:noisescale1", "bm4d:oracle", None,
             f"for reference: mr-3d at noise scale 1 (`--noise-scale 1`) against BM4D (oracle sigma) at Rician {_pct(noise)}")
    lines.extend(lesion_targets(bench_dir / "lesions" / "results.csv"))
    fast("mr-2d_ms_per_256_slice", 50, "ms", "must: a 256x256 slice through mr-2d in <= 50 ms (2 cores)")
    fast("mr-3d_3planes_s_per_256cube", 60, "s", "must: a 256^3 volume through mr-3d in <= 60 s (three planes, what it does on near-isotropic volumes)")
    fast("mr-3d_slab_s_per_256cube", 60, "s", "must: the same through mr-3d's slab network (thick-slice volumes)")
    for noise, goal in (("rician:0.05", 1.0), ("rician:0.09", 1.5)):
        diff("mr", noise, "dae:mr-2d", "bm3d:oracle", goal, f"goal: mr-2d >= +{goal:.1f} dB over BM3D (oracle sigma) at Rician {_pct(noise)}")
    diff("ct", "lowdose:0.25", "dae:ct-2d", "bm3d:oracle", 1.0, "goal: ct-2d >= +1.0 dB over BM3D (oracle sigma) at 25% dose")
    for noise in ("rician:0.05", "rician:0.09"):  # reported, not targets: what the ensembles reach
        for method, what in (("dae:mr-2d:noisescale1", "mr-2d at noise scale 1 (`--noise-scale 1`, its PSNR-best point)"),
                             ("dae:mr-2d:tta", "mr-2d --tta (4x compute)"), ("dae:mr-3d", "mr-3d (3x)")):
            diff("mr", noise, method, "bm3d:oracle", None, f"for reference: {what} over BM3D (oracle sigma) at Rician {_pct(noise)}")
    return "\n".join(lines)


def lesion_targets(path: Path) -> list[str]:
    """Issue #31 item 2's must per model and level from the paired lesion probe (scripts/lesion_probe.py's
    results.csv): the 5 mm lesion at 5% contrast kept >= 0.9 at Rician 5% (>= 0.8 at 9%), mean over
    the slabs, with the mean fg PSNR (one per slab) above BM3D's with the oracle sigma."""
    if not path.exists():
        return ["| must (#31): lesions kept (paired probe) | not run | |"]
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for noise, need in (("rician:0.05", 0.9), ("rician:0.09", 0.8)):
        sel = [r for r in rows if r["noise"] == noise]

        def fg(method, sel=sel):  # one fg PSNR per slab
            return float(np.mean([float(p) for _, p in {(r["slab"], r["psnr_fg"]) for r in sel if r["method"] == method}]))

        if not any(r["method"] == "bm3d (oracle sigma)" for r in sel):
            continue
        for model in ("mr-2d", "mr-3d"):
            kept = [float(r["kept"]) for r in sel if r["method"] == model and float(r["diameter_mm"]) == 5.0
                    and abs(float(r["contrast"]) - 0.05) < 1e-6]
            if not kept:
                continue
            k, d = float(np.mean(kept)), fg(model) - fg("bm3d (oracle sigma)")
            out.append(f"| must (#31): {model} keeps >= {need} of the 5 mm 5% lesion at Rician {float(noise.split(':')[1]):.0%} "
                       f"with fg PSNR above BM3D (oracle sigma) (paired lesion probe) | kept {k:.3f}, fg PSNR {d:+.2f} dB "
                       f"| {'met' if k >= need and d > 0 else 'not met'} |")
    return out
