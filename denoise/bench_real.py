"""``denoise bench --real``: every method scored on real noise, with repeated acquisitions as reference.

For each scan under the folder that holds K >= 2 repeats of the same anatomy (a 4D NIfTI, a DICOM
series with repeated positions), the repeats that differ by noise alone are kept
(`denoise.realnoise.consistent_repeats`: moved or saturated time points are left out and named),
and each kept repeat k in turn is denoised as a 3D scan and scored against
the mean of the other K-1 repeats with the reference's own noise removed
(`denoise.realnoise.unbiased_psnr` / `unbiased_ssim`): foreground mask and data range (the
`reference_intensity`) of the mean of all repeats. Classical methods estimate sigma themselves (as a
user would run them: there is no oracle on real data); learned models estimate their noise level.
Writes ``results.csv`` (one row per scan x method x repeat) and ``results.md`` (the mean over
repeats, and the gain over the noisy input), with the repeats' noise sigma, its lag-1 correlation
and their stability.
"""

from __future__ import annotations

import csv
import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from denoise.infer import denoise_scan
from denoise.io import discover_scans
from denoise.metrics import foreground_mask
from denoise.normalize import reference_intensity
from denoise.realnoise import consistent_repeats, lag_correlation, repeat_noise_variance, repeat_stability, score_repeat
from denoise.scan import Scan

__all__ = ["run_real_benchmark", "repeat_sets", "still_repeats", "REAL_FIELDS", "DEFAULT_REAL_METHODS"]

REAL_FIELDS = ["scan", "method", "repeat", "repeats", "kept", "psnr_fg", "ssim_fg", "seconds", "noise_sigma", "noise_lag1",
               "stability", "data_range"]
# BM3D is left out as in `denoise.bench.default_methods` (minutes per repeat): name it to run it
DEFAULT_REAL_METHODS = ["noisy", "nlm", "dae:mr-2d", "dae:mr-2d:tta", "dae:mr-3d"]
log = logging.getLogger(__name__)


def repeat_sets(data: str | Path) -> list[tuple[str, Scan]]:
    """(relpath, scan) of every scan under ``data`` with >= 2 repeats along its first (time) axis."""
    sources, _ = discover_scans(data)
    out = []
    for s in sources:
        try:
            scan = s.load()
        except Exception as exc:  # one unreadable file never stops the benchmark
            log.warning("%s skipped: %s", s.relpath, getattr(exc, "reason", exc))
            continue
        if scan.array.ndim == 4 and scan.array.shape[0] >= 2:
            out.append((s.relpath, scan))
    return out


def still_repeats(series: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray, float]:
    """(kept indices, the kept repeats, foreground mask and data range of their mean) of a 4D
    series: the scoring frame every real-noise benchmark shares (`consistent_repeats` leaves moved
    or saturated time points out)."""
    everything = np.asarray(series, dtype=np.float64)
    keep = consistent_repeats(everything, foreground_mask(everything.mean(axis=0)))
    repeats = everything[keep]
    mean = repeats.mean(axis=0)
    return keep, repeats, foreground_mask(mean), reference_intensity(mean)


def run_real_benchmark(data: str | Path, out: str | Path, *, methods: list[str] | None = None,
                       max_repeats: int | None = None, progress: bool = True) -> Path:
    """Score ``methods`` (names as in `denoise.bench`: noisy, nlm, bm3d, mr-2d or dae:mr-2d,
    dae:mr-2d:tta ...; checked before anything runs, `denoise.methods.bench_methods`) on every
    repeated-acquisition scan under ``data``; ``max_repeats`` scores only the first N repeats of
    each scan (all of them still form the references). Returns the path of results.md."""
    from denoise.bench import _method, method_options, method_strength
    from denoise.methods import bench_methods

    methods = bench_methods(methods) if methods else DEFAULT_REAL_METHODS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sets = repeat_sets(data)
    if not sets:
        raise ValueError(f"no scan with repeated acquisitions (a 4D series with >= 2 time points) under {data}")
    rows: list[dict[str, str]] = []
    cache: dict = {}
    todo = len(sets) * len(methods)
    bar = tqdm(total=todo, desc="real-noise bench", unit="case", disable=not progress)
    for name, scan in sets:
        everything = scan.array.astype(np.float64)
        keep, repeats, mask, peak = still_repeats(everything)
        var = repeat_noise_variance(repeats, mask)
        diff = (repeats[1] - repeats[0]) / np.sqrt(2)
        lag1 = np.mean([lag_correlation(diff, axis=a, mask=mask) for a in (-1, -2)])
        stable = repeat_stability(repeats, mask)
        for method in methods:
            bar.set_description(method)
            whole = None  # :series: the 4D series denoised at once, as `denoise run` takes it
            for k in range(min(len(repeats), max_repeats or len(repeats))):
                one = Scan(scan.array[keep[k]], scan.spacing[-3:], affine=scan.affine, modality=scan.modality)
                den = _method(method, scan.modality, "real", 0.0, cache, one, one)
                if den is None:
                    continue
                t0 = time.perf_counter()
                if den != "noisy" and method_options(method)["series"]:
                    if whole is None:
                        whole = denoise_scan(scan, den, progress=progress, strength=method_strength(method)).array
                        whole_secs = (time.perf_counter() - t0) / len(everything)
                    result, secs = whole[keep[k]], whole_secs
                else:
                    result = (one.array if den == "noisy"
                              else denoise_scan(one, den, progress=progress, strength=method_strength(method)).array)
                    secs = time.perf_counter() - t0
                s = score_repeat(result, repeats, k, data_range=peak, mask=mask)
                rows.append({"scan": name, "method": method, "repeat": str(keep[k]), "repeats": str(len(everything)),
                             "kept": " ".join(map(str, keep)),
                             "psnr_fg": f"{s['psnr']:.3f}", "ssim_fg": f"{s['ssim']:.4f}", "seconds": f"{secs:.3f}",
                             "noise_sigma": f"{np.sqrt(var) / peak:.4f}", "noise_lag1": f"{lag1:.3f}",
                             "stability": f"{stable:.4f}", "data_range": f"{peak:.4g}"})
            bar.update(1)
    bar.close()
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=REAL_FIELDS)
        w.writeheader()
        w.writerows(rows)
    md = out / "results.md"
    md.write_text(summarize_real(rows))
    return md


def summarize_real(rows: list[dict[str, str]]) -> str:
    """Markdown: per scan, each method's mean unbiased PSNR/SSIM over the repeats and its gain over
    the noisy input (paired by repeat)."""
    by: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by[(r["scan"], r["method"])].append(r)
    lines = ["Real noise: unbiased PSNR/SSIM against the mean of the other repeats (foreground; "
             "data range = robust max of the mean of all repeats); gain = paired difference to the noisy input.", ""]
    for scan in sorted({r["scan"] for r in rows}):
        first = next(r for r in rows if r["scan"] == scan)
        lines += [f"### {scan}", "",
                  f"{first['repeats']} repeats, {len(first['kept'].split())} kept as still (`consistent_repeats`: "
                  f"{first['kept']}); noise sigma {float(first['noise_sigma']) * 100:.2f}% of the data range; "
                  f"lag-1 correlation of a repeat difference {first['noise_lag1']}; "
                  f"repeat-to-repeat stability (std/mean of the repeats' means) {first['stability']}", "",
                  "| method | PSNR fg (dB) | gain over noisy (dB) | SSIM fg | s/repeat |", "|---|---|---|---|---|"]
        noisy = {r["repeat"]: float(r["psnr_fg"]) for r in by.get((scan, "noisy"), [])}
        for (s, method), rs in sorted(by.items(), key=lambda kv: kv[0][1]):
            if s != scan:
                continue
            p = [float(r["psnr_fg"]) for r in rs]
            gain = [float(r["psnr_fg"]) - noisy[r["repeat"]] for r in rs if r["repeat"] in noisy]
            lines.append(f"| {method} | {np.mean(p):.2f} | {np.mean(gain):+.2f} | "
                         f"{np.mean([float(r['ssim_fg']) for r in rs]):.4f} | "
                         f"{np.mean([float(r['seconds']) for r in rs]):.2f} |")
        lines.append("")
    return "\n".join(lines)
