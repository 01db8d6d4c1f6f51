"""How much `denoise adapt` gains, measured two ways (issue #27, section 4; docs/benchmarks.md).

**Real noise** (`adapt_real_benchmark`): for every repeated-acquisition series under a folder, the
repeats are scored as in ``denoise bench --real`` (unbiased PSNR/SSIM against the mean of the other
repeats, `denoise.realnoise.score_repeat`) for the noisy input, the shipped model, BM3D with
estimated sigma, and adapted models:

- ``adapt-n2n-others``: Noise2Noise on the *other* series' repeats (a scanner and subject the
  model never saw in adaptation is scored);
- ``adapt-r2r``: recorrupted pairs (R2R) on the scored repeat alone, noise level and correlation
  estimated from it (a user's single noisy scan: the model learns from the very input it then
  denoises; the reference repeats are never seen); ``adapt-r2r-measured-noise`` the same with the
  noise std and lag-1 correlation a user would measure from two repeats (their difference / sqrt 2);
- ``adapt-bs-rR``: blind spot of radius R on the scored repeat alone;
- ``adapt-sure``: GainTuning with SURE (`denoise.gaintune`) on the scored repeat alone, noise level
  estimated and taken as white; ``adapt-sure-measured-noise`` told the level and correlation a user
  measures from two repeats.

**Synthetic noise** (`adapt_synthetic_check`): a clean volume with added noise, the shipped model
against the models adapted (R2R, blind spot, SURE gains) on that noisy volume alone, both scored against the clean
volume (PSNR/SSIM over the foreground, data range of the `denoise.bench` protocol).
"""

from __future__ import annotations

import csv
import logging
import tempfile
from pathlib import Path

import numpy as np

from denoise.adapt import adapt_scans
from denoise.bench import _method
from denoise.bench_real import repeat_sets, still_repeats
from denoise.infer import denoise_scan, load_model
from denoise.metrics import data_range_for, foreground_mask, psnr, ssim
from denoise.realnoise import lag_correlation, score_repeat
from denoise.scan import Scan

__all__ = ["adapt_real_benchmark", "adapt_synthetic_check"]
log = logging.getLogger(__name__)
FIELDS = ["scan", "method", "repeat", "psnr_fg", "ssim_fg", "gain_db", "adapt_seconds", "adapt_steps", "detail"]


def adapt_real_benchmark(data: str | Path, out: str | Path, *, minutes: float = 2.0, single_minutes: float = 1.0,
                         radii: tuple[int, ...] = (0, 1), init: str = "mr-2d", classical: tuple[str, ...] = ("bm3d",),
                         seed: int = 0, single: bool = True, patience: int = 6) -> Path:
    """Score shipped, classical and adapted models on every repeat series under ``data`` (the first
    still repeat of each); write results.csv and results.md into ``out``; return results.md.
    ``single=False`` leaves out the single-scan methods; ``patience`` is Noise2Noise's early stop."""
    sets = repeat_sets(data)
    if not sets:
        raise ValueError(f"no scan with repeated acquisitions under {data}")
    rows: list[dict[str, str]] = []
    shipped = load_model(init, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for name, scan in sets:
            keep, repeats, mask, peak = still_repeats(scan.array)
            one = Scan(scan.array[keep[0]], scan.spacing[-3:], affine=scan.affine, modality=scan.modality)

            def score(method: str, result: np.ndarray, run: dict | None = None, *,
                      ctx=(name, repeats, peak, mask, keep[0])) -> None:
                s = score_repeat(result, ctx[1], 0, data_range=ctx[2], mask=ctx[3])
                rows.append({"scan": ctx[0], "method": method, "repeat": str(ctx[4]), "psnr_fg": f"{s['psnr']:.3f}",
                             "ssim_fg": f"{s['ssim']:.4f}", **_run_columns(run)})

            score("noisy", one.array)
            score(init, denoise_scan(one, shipped).array)
            for c in classical:  # sigma estimated, as `denoise bench --real` runs them
                den = _method(c, scan.modality, "real", 0.0, {}, one, one)
                if den is None:
                    log.warning("%s skipped: not installed", c)
                    continue
                score(f"{c} (sigma estimated)", denoise_scan(one, den).array)
            diff = (repeats[1] - repeats[0]) / np.sqrt(2.0)  # what a user can measure with two repeats
            measured = {"noise_sigma": float(diff[mask].std()),
                        "noise_corr": float(np.mean([lag_correlation(diff, axis=a, mask=mask) for a in (-1, -2)]))}
            runs = [] if not single else [("adapt-r2r", [(name, one)], {"method": "r2r", "minutes": single_minutes}),
                    ("adapt-r2r-measured-noise", [(name, one)], {"method": "r2r", "minutes": single_minutes, **measured})]
            runs += [(f"adapt-bs-r{r}", [(name, one)], {"method": "blindspot", "radius": r, "minutes": single_minutes})
                     for r in (radii if single else ())]
            runs += [] if not single else [("adapt-sure", [(name, one)], {"method": "sure", "minutes": single_minutes}),
                     ("adapt-sure-measured-noise", [(name, one)], {"method": "sure", "minutes": single_minutes, **measured})]
            others = [(n, s) for n, s in sets if n != name]
            if others:
                runs.insert(0, ("adapt-n2n-others", others, {"method": "n2n", "minutes": minutes, "patience": patience}))
            for label, scans, options in runs:
                result, run = _adapted(one, scans, Path(tmp) / f"{len(rows)}.pt", init=init, seed=seed, **options)
                score(label, result, run)
    return _write(out, _gains(rows), "Real noise: unbiased PSNR/SSIM of one still repeat against the mean of the others "
                  "(`denoise.realnoise.score_repeat`, foreground); gain over the noisy repeat.")


def adapt_synthetic_check(cases: list[tuple[str, Scan, Scan, float | None]], out: str | Path, *,
                          init_for: dict[str, str] | None = None, minutes: float = 3.0,
                          methods: tuple[str, ...] = ("r2r", "blindspot", "sure"), seed: int = 0) -> Path:
    """For each ``(name, clean, noisy, sigma)``: the shipped model (``init_for[modality]``, default
    mr-2d / ct-2d) and the models adapted (each of ``methods``) on ``noisy`` alone, scored against
    ``clean``; with the added noise's ``sigma`` (scan units; None where it is not one number) also
    R2R and SURE told that level (``adapt-r2r-true-noise``, ``adapt-sure-true-noise``: what a
    perfect noise measurement gives)."""
    init_for = init_for or {"MR": "mr-2d", "CT": "ct-2d"}
    rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, clean, noisy, sigma in cases:
            mod = "CT" if clean.modality.upper() == "CT" else "MR"
            rng = data_range_for(clean.array, mod)
            mask = foreground_mask(clean.array)

            def score(method: str, result: np.ndarray, run: dict | None = None, *,
                      ctx=(name, clean.array, rng, mask)) -> None:
                rows.append({"scan": ctx[0], "method": method, "repeat": "",
                             "psnr_fg": f"{psnr(ctx[1], result, data_range=ctx[2], mask=ctx[3]):.3f}",
                             "ssim_fg": f"{ssim(ctx[1], result, data_range=ctx[2], mask=ctx[3]):.4f}", **_run_columns(run)})

            score("noisy", noisy.array)
            score(init_for[mod], denoise_scan(noisy, load_model(init_for[mod], device="cpu")).array)
            for method in methods:
                result, run = _adapted(noisy, [(name, noisy)], Path(tmp) / f"{len(rows)}.pt", init=init_for[mod],
                                       method=method, minutes=minutes, seed=seed)
                score(f"adapt-bs-r{run['radius']}" if method == "blindspot" else f"adapt-{method}", result, run)
            for method in ("r2r", "sure") if sigma is not None else ():
                result, run = _adapted(noisy, [(name, noisy)], Path(tmp) / f"{len(rows)}.pt", init=init_for[mod],
                                       method=method, minutes=minutes, seed=seed, noise_sigma=sigma, noise_corr=0.0)
                score(f"adapt-{method}-true-noise", result, run)
    return _write(out, _gains(rows), "Synthetic noise on clean volumes: PSNR/SSIM against the clean volume (foreground; "
                  "MR data range = robust max of the clean volume, CT 2000 HU); gain over the noisy input.")


def _adapted(target: Scan, scans: list[tuple[str, Scan]], ckpt: Path, **options) -> tuple[np.ndarray, dict]:
    """Adapt on ``scans`` (`adapt_scans` with ``options``), then denoise ``target`` with the result."""
    run = adapt_scans(scans, ckpt, progress=False, **options)
    return denoise_scan(target, load_model(ckpt, device="cpu")).array, run


def _run_columns(run: dict | None) -> dict[str, str]:
    if run is None:
        return {"gain_db": "", "adapt_seconds": "", "adapt_steps": "", "detail": ""}
    detail = f"val loss {run['start_val_loss']:.4g} -> {run['best_val_loss']:.4g} (step {run['best_step']})"
    extra = (f"{run['pairs']} pairs from {run['scans']} other series" if run["method"] == "n2n" else run["noise_model"] or "")
    return {"gain_db": "", "adapt_seconds": f"{run['seconds']:.0f}", "adapt_steps": str(run["steps"]),
            "detail": f"{detail}; {extra}" if extra else detail}


def _gains(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    noisy = {r["scan"]: float(r["psnr_fg"]) for r in rows if r["method"] == "noisy"}
    for r in rows:
        r["gain_db"] = f"{float(r['psnr_fg']) - noisy[r['scan']]:+.3f}"
    return rows


def _write(out: Path, rows: list[dict[str, str]], title: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    lines = [title, ""]
    for scan in dict.fromkeys(r["scan"] for r in rows):
        lines += [f"### {scan}", "", "| method | PSNR fg (dB) | gain (dB) | SSIM fg | adapt s / steps | detail |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {float(r['psnr_fg']):.2f} | {r['gain_db']} | {r['ssim_fg']} | "
                  f"{r['adapt_seconds'] + ' / ' + r['adapt_steps'] if r['adapt_steps'] else ''} | {r['detail']} |"
                  for r in rows if r["scan"] == scan]
        lines.append("")
    md = out / "results.md"
    md.write_text("\n".join(lines))
    return md
