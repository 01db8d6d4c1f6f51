"""The batch job's manifest: one row per scan (no patient identifiers), written atomically, and the
resume rule (`still_done`) that decides whether an earlier row can stand."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from denoise.atomic import write_atomic
from denoise.hashing import files_hash
from denoise.io import ScanSource, Skipped

__all__ = ["MANIFEST_FIELDS", "input_hash", "read_manifest", "write_manifest", "still_done", "model_label", "skip_row",
           "files_label", "relative_reason", "output_stamp"]

MANIFEST_FIELDS = ["input", "files", "output", "noise_map", "uncertainty", "anomaly", "output_stamp", "kind", "modality", "shape", "status", "reason", "model", "model_hash",
                   "input_hash", "seconds", "sigma_before", "sigma_after", "noise_corr", "noise_spread", "noise_level", "removed_image_corr", "pattern_ratio", "guarded_slices", "repeat_strength", "psnr_fg", "ssim_fg", "warning",
                   "new_study_uid"]


def input_hash(source: ScanSource) -> str:
    """SHA-256 over the scan's files (names relative to each other and contents), 16 hex digits."""
    return files_hash(source.files, length=16)


def still_done(old: dict[str, Any], source: ScanSource, out: Path, model: str | None, tta: bool,
               planes: int | None, strength: float = 1.0, noise_map: bool = False, uncertainty: bool = False,
               anomaly: str = "", *, noise_level: str = "auto", noise_scale: float | None = None,
               calibrate: bool = True) -> bool:
    """Whether a scan's earlier manifest row can stand (``--continue``): same input hash, model
    and inference options, its output still there and still the file the row wrote (`output_stamp`:
    not replaced since, by a killed run or another part), and its noise and uncertainty maps when
    they are asked for. ``anomaly``: an anomaly job's ``SCORE:POLARITY`` (`denoise.anomaly_job`),
    "" for denoising: a row of the other kind never stands."""
    from denoise.models.learned import option_suffix

    if old.get("input_hash") != input_hash(source) or (old.get("anomaly") or "") != anomaly:
        return False
    label, options = str(old.get("model", "")), option_suffix(tta, planes, strength, noise_level, noise_scale, calibrate)
    if label.partition("+")[2] != options.lstrip("+"):  # run with other inference options
        return False
    if model is not None and label != model_label(model) + options:
        return False
    if not old.get("output") or output_stamp(out / old["output"]) != old.get("output_stamp"):
        return False
    maps = [key for key, wanted in (("noise_map", noise_map), ("uncertainty", uncertainty)) if wanted]
    return all(old.get(key) and (out / old[key]).exists() for key in maps)


def output_stamp(path: Path) -> str:
    """Identity and modification time of an output file or series folder: every write renames a new
    file into place, so a changed stamp means the output is not the one a row describes."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_mtime_ns}"


def model_label(model: str) -> str:
    """The name a model's manifest rows carry: a checkpoint's stored name or file stem; an exported
    folder's ``NAME.onnx``."""
    p = Path(model)
    if p.is_dir():
        from denoise.export import EXPORT_FILE
        from denoise.exported import export_label

        if (p / EXPORT_FILE).is_file():
            return export_label(json.loads((p / EXPORT_FILE).read_text()), p)
    if p.suffix == ".pt" and p.exists():
        from denoise.checkpoint import load_checkpoint

        _, info, _ = load_checkpoint(p)
        return info.get("name") or p.stem
    return model


def skip_row(sk: Skipped) -> dict[str, Any]:
    """The row of a file the scan discovery skipped (not a scan) or could not read (failed)."""
    from denoise.io.nifti import is_nifti_path

    kind = "nifti" if is_nifti_path(sk.relpath) else "dicom" if sk.failed else "other"
    return {"input": sk.relpath, "files": sk.relpath, "status": "failed" if sk.failed else "skipped",
            "reason": sk.reason, "kind": kind}


def files_label(source: ScanSource, root: Path | None, culprit: Path | None = None) -> str:
    """The file(s) a user has to look at for a row, relative to the input folder: the file an error
    names (``culprit``), a NIfTI file, or a DICOM series' folder with its file count."""
    def rel(p: Path) -> str:
        if root is None:
            return p.name
        try:
            return Path(os.path.abspath(p)).relative_to(root).as_posix()
        except ValueError:
            return p.name
    if culprit is not None and (culprit.is_file() or culprit.is_symlink() or not culprit.exists()):
        return rel(culprit)
    if len(source.files) == 1:
        return rel(source.files[0])
    folder = rel(source.files[0].parent)
    return f"{folder}/ ({len(source.files)} files)" if folder != "." else f"({len(source.files)} files)"


_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[^\s'\",:;()\[\]]+/)*([^\s'\",:;()\[\]/]+)")


def relative_reason(text: str, roots: list[Path]) -> str:
    """``text`` with paths under ``roots`` made relative to them and any other absolute path cut to
    its last component: the parent folders of a scan (often named after the patient) never reach
    the manifest or the log."""
    for root in sorted({str(r) for r in roots if str(r) not in ("", "/")}, key=len, reverse=True):
        text = text.replace(root + os.sep, "").replace(root, ".")
    return _ABS_PATH.sub(lambda m: m.group(1), text)


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of an earlier manifest by input path ({} when there is none)."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def write_manifest(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Write every row (sorted by input) under a temporary name, then rename: never half a manifest."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
            w = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
            w.writeheader()
            for key in sorted(rows):
                w.writerow({k: rows[key].get(k, "") for k in MANIFEST_FIELDS})

    write_atomic(path, write)
