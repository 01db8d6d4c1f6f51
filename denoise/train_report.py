"""What a training run reports (issue #29, item 12): the split, the starting model's score, a
per-epoch table (metrics.csv), a summary (summary.json) and a warning when fine-tuning made the
model worse. `denoise.train.fit` calls these; they only format and write small text files."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from denoise.atomic import write_text_atomic

__all__ = ["split_lines", "write_metrics", "training_summary", "write_summary"]


def split_lines(tr_idx: list[int], va_idx: list[int], files: list[str] | None = None) -> list[str]:
    """Human-readable lines naming the training and validation scans (file names where known)."""
    def name(i: int) -> str:
        return Path(files[i]).name if files and i < len(files) else f"scan {i}"

    if not va_idx:
        return [f"training on {len(tr_idx)} scan(s): {', '.join(name(i) for i in tr_idx)}; "
                "validation: the last slices of the (single) scan"]
    return [f"training scans ({len(tr_idx)}): {', '.join(name(i) for i in tr_idx)}",
            f"validation scans ({len(va_idx)}): {', '.join(name(i) for i in va_idx)}"]


def write_metrics(out_dir: str | Path, history: list[dict[str, float]], start: dict[str, float] | None = None) -> Path:
    """``out_dir/metrics.csv``: one row per epoch (and a first row ``start`` for the starting
    model when there is one), columns epoch, loss, val_psnr, val_ssim, val_psnr_noisy, seconds, ...
    Rewritten whole after every epoch (it is small), so it is complete whenever the run stops."""
    path = Path(out_dir) / "metrics.csv"
    rows = ([{"epoch": "start", **start}] if start else []) + [dict(h) for h in history]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())
    return path


def training_summary(history: list[dict[str, float]], start: dict[str, float] | None = None) -> tuple[dict[str, Any], str | None]:
    """(summary, warning): the best epoch and its validation PSNR, the last epoch's, the starting
    model's and the gains over it; a warning when the run ended below where it started (fine-tuning
    made the model worse on its own validation patches)."""
    if not history:
        return {"epochs": 0}, None
    best = max(history, key=lambda h: h["val_psnr"])
    last = history[-1]
    summary: dict[str, Any] = {"epochs": len(history), "best_epoch": int(best["epoch"]),
                               "best_val_psnr": round(best["val_psnr"], 3), "last_val_psnr": round(last["val_psnr"], 3)}
    warning = None
    if start and math.isfinite(start.get("val_psnr", math.nan)):
        summary["start_val_psnr"] = round(start["val_psnr"], 3)
        summary["best_gain_db"] = round(best["val_psnr"] - start["val_psnr"], 3)
        summary["last_gain_db"] = round(last["val_psnr"] - start["val_psnr"], 3)
        if last["val_psnr"] < start["val_psnr"]:
            warning = (f"fine-tuning made the model worse on its validation patches: {start['val_psnr']:.2f} dB at "
                       f"the start, {last['val_psnr']:.2f} dB at the end (best {best['val_psnr']:.2f} dB, epoch "
                       f"{int(best['epoch'])}; best.pt holds it)")
    return summary, warning


def write_summary(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    """``out_dir/summary.json``."""
    path = Path(out_dir) / "summary.json"
    write_text_atomic(path, json.dumps(summary, indent=1))
    return path
