"""`denoise evaluate`: pair each scan of a folder with its clean reference (`denoise.pairing`) and
score it (PSNR/SSIM with the package's data-range rule, foreground mask); write a CSV table."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from denoise.io import ScanReadError, discover_scans
from denoise.manifest import relative_reason
from denoise.metrics import data_range_for, foreground_mask, psnr, ssim
from denoise.outdir import UsageError
from denoise.pairing import ReferenceIndex, is_noise_map

__all__ = ["evaluate_folder", "EVALUATION_FIELDS"]

log = logging.getLogger(__name__)
EVALUATION_FIELDS = ["scan", "psnr", "ssim", "data_range", "mask", "reason", "reference"]


def evaluate_folder(denoised: str | Path, reference: str | Path, *, mask: str = "auto",
                    out: str | Path | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Pair each scan with its reference and score it; write a CSV table. Returns (rows, csv path).

    Pairing (`denoise.pairing.ReferenceIndex`): the same relative path (a DICOM series that
    `run`/`simulate` wrote: the same folder), else for a derived DICOM series the reference
    series it derives from by UID; the ``reference`` column names the one used. A scan
    without a reference gets a row with empty scores and the reason, and a logged warning; noise
    maps (``run --noise-map``) are left out. Reasons name paths relative to the two folders.
    Data range: CT 2000 HU (window [-1000, 1000]); otherwise the reference's `reference_intensity`. ``mask="auto"`` scores the reference's `foreground_mask`.
    ``out``: a folder (the table goes to ``out/evaluation.csv``; created if missing) or a ``.csv``
    file path (its folder created if missing); default ``denoised/evaluation.csv``. Anything else
    (another existing file, another suffix) raises `UsageError` before anything is scored.
    """
    den_root, ref_root = Path(denoised), Path(reference)
    path = _evaluation_path(out, den_root)
    index = ReferenceIndex(discover_scans(ref_root)[0])
    found = discover_scans(den_root)[0]
    homes = {s.derived_folder or s.relpath for s in found}
    rows = []
    for s in found:
        if is_noise_map(s, homes):
            continue
        row: dict[str, Any] = {"scan": s.relpath, "psnr": "", "ssim": "", "data_range": "", "mask": mask, "reason": "",
                               "reference": ""}
        ref, how = index.find(s)
        if ref is None:
            row["reason"] = how
            log.warning("%s: %s: not scored", s.relpath, how)
            rows.append(row)
            continue
        row["reference"] = ref.relpath
        try:
            d, r = s.load(), ref.load()
            if d.array.shape != r.array.shape:
                raise ValueError(f"shape {d.array.shape} vs reference {r.array.shape}")
            rng = data_range_for(r.array, r.modality)
            m = foreground_mask(r.array) if mask == "auto" else None
            row.update(psnr=f"{psnr(r.array, d.array, data_range=rng, mask=m):.3f}",
                       ssim=f"{ssim(r.array, d.array, data_range=rng, mask=m):.4f}", data_range=f"{rng:.4g}")
        except (ScanReadError, ValueError) as exc:
            row["reason"] = relative_reason(str(exc), [den_root.resolve(), ref_root.resolve(), den_root, ref_root])
            log.warning("%s: not scored: %s", s.relpath, row["reason"])
        rows.append(row)
    try:
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=EVALUATION_FIELDS)
            w.writeheader()
            w.writerows(rows)
    except OSError as exc:
        raise UsageError(f"cannot write the table {path}: {exc.strerror or exc} (choose another place with --out)") from None
    return rows, path


def _evaluation_path(out: str | Path | None, denoised: Path) -> Path:
    """Where `evaluate_folder` writes its table (see there); creates the folder it goes into."""
    if out is None:
        return denoised / "evaluation.csv"
    out = Path(out)
    if out.is_dir():
        folder, path = out, out / "evaluation.csv"
    elif out.suffix.lower() == ".csv":
        folder, path = out.parent, out
    elif not out.exists() and not out.suffix:
        folder, path = out, out / "evaluation.csv"
    else:
        raise UsageError(f"--out {out}: give a folder (the table is written as DIR/evaluation.csv) or a file path "
                         "ending in .csv")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create folder {folder}: {exc.strerror or exc}") from None
    return path
