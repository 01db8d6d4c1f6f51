"""File I/O: the only part of the package that touches files.

``read_scan`` reads one NIfTI file, one DICOM file or a folder holding one DICOM series;
``find_scans`` walks a tree and returns every scan in it; ``discover_scans`` does the same lazily
(what the batch job uses, so memory stays flat); ``write_scan`` writes NIfTI or a derived DICOM
series depending on the target path.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from denoise.io.dicom_read import DicomStack, group_dicom, load_stack, read_dicom_headers
from denoise.io.dicom_write import RESEARCH_NOTE, is_denoise_output, write_dicom_series
from denoise.io.errors import NotAnImageError, ScanReadError
from denoise.io.nifti import is_nifti_path, read_nifti, write_nifti
from denoise.io.probe import unreadable_reason
from denoise.scan import Scan

__all__ = [
    "read_scan",
    "write_scan",
    "find_scans",
    "discover_scans",
    "ScanSource",
    "Skipped",
    "ScanReadError",
    "NotAnImageError",
    "RESEARCH_NOTE",
]


@dataclass(frozen=True)
class ScanSource:
    """A scan found on disk, not yet loaded: one NIfTI file or one DICOM stack.

    Attributes:
        kind: ``"nifti"`` or ``"dicom"``.
        relpath: POSIX path relative to the searched root: the NIfTI file, or for DICOM the folder
            holding the series followed by the series label (unique per series).
        derived_folder: for a DICOM series this package wrote (`denoise run`, `denoise simulate`)
            alone in its folder (no other scan in or under it), that folder's relpath, else ''.
            Outputs made from such a series go into the same folder name rather than one level
            deeper (`denoise.scan_task.output_relpath`), so a simulate -> run -> run chain keeps
            the first input's folder names and every step pairs with it (`denoise.pairing`).
        files: the files that make up the scan. For DICOM this includes duplicate copies of an
            object (same SOPInstanceUID, e.g. saved in two transfer syntaxes) that are read only
            once: they are part of the input, so its hash covers them.
    """

    kind: str
    relpath: str
    files: tuple[Path, ...]
    stack: DicomStack | None = None
    derived_folder: str = ""

    def load(self) -> Scan:
        """Read the pixels into a Scan (raises ScanReadError naming the file on failure).

        A DICOM scan's ``meta["read_notes"]`` lists, as short strings with file names only, what
        the reader noticed but did not refuse (duplicates ignored, MR values below zero ...)."""
        if self.kind == "nifti":
            return read_nifti(self.files[0])
        assert self.stack is not None
        return load_stack(self.stack)


@dataclass(frozen=True)
class Skipped:
    """A file under the root that is not a scan, or could not be read, with the reason."""

    relpath: str
    reason: str
    failed: bool  # True: it looked like an image but is broken; False: simply not an image


def discover_scans(root: str | Path) -> tuple[list[ScanSource], list[Skipped]]:
    """Find every scan under ``root`` without loading pixels.

    DICOM files are grouped into series regardless of file names, order or folder mixing;
    images of one series that share positions but differ in kind (magnitude/phase, echoes,
    b-values; GE's private image type, RescaleType, an enhanced object's per-frame type) become
    separate scans; repeated positions of one kind become a 4D time series (refused on load when
    the values show two kinds, e.g. a field map stored with its magnitude). Copies of one object
    (same SOPInstanceUID) are read once. Hidden files (dot files) are ignored.

    Returns:
        (scans sorted by relpath, skipped files with reasons).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_file():
        files = [root]
        base = root.parent
    else:
        files = sorted(p for p in _walk(root))
        base = root
    scans: list[ScanSource] = []
    skipped: list[Skipped] = []
    frames_by_dir: dict[Path, list] = {}
    for path in files:
        rel = path.relative_to(base).as_posix()
        why = unreadable_reason(path)
        if why is not None:
            skipped.append(Skipped(rel, why, failed=True))
            continue
        if is_nifti_path(path):
            scans.append(ScanSource("nifti", rel, (path,)))
            continue
        try:
            frames = read_dicom_headers(path)
        except NotAnImageError as exc:
            skipped.append(Skipped(rel, exc.reason, failed=False))
            continue
        except ScanReadError as exc:
            looks_dicom = _looks_like_dicom(path)
            reason = exc.reason if looks_dicom else "not a DICOM or NIfTI file"
            skipped.append(Skipped(rel, reason, failed=looks_dicom))
            continue
        frames_by_dir.setdefault(path.parent, []).extend(frames)
    for folder, frames in frames_by_dir.items():
        stacks = group_dicom(frames)
        rel_dir = folder.relative_to(base).as_posix()
        for stack in stacks:
            rel = f"{rel_dir}/{stack.label}" if rel_dir != "." else stack.label
            own = rel_dir != "." and len(stacks) == 1 and is_denoise_output(stack.frames[0].header)
            scans.append(ScanSource("dicom", rel, tuple(stack.files), stack, rel_dir if own else ""))
    _unless_shared(scans)
    _dedupe_labels(scans)
    scans.sort(key=lambda s: s.relpath)
    return scans, skipped


def find_scans(root: str | Path) -> list[Scan]:
    """Every scan under ``root``, loaded (see `discover_scans`); unreadable files are skipped."""
    scans, _ = discover_scans(root)
    out = []
    for source in scans:
        try:
            out.append(source.load())
        except ScanReadError:
            continue
    return out


def read_scan(path: str | Path) -> Scan:
    """Read one NIfTI file, one DICOM file, or a folder holding exactly one DICOM series.

    Raises:
        ScanReadError: unreadable, corrupt, or a folder holding zero or several series.
        NotAnImageError: a DICOM object without image content.
    """
    path = Path(path)
    if not path.exists():
        raise ScanReadError(path, "no such file or folder")
    if path.is_file() and is_nifti_path(path):
        return read_nifti(path)
    if path.is_file():
        frames = read_dicom_headers(path)
        stacks = group_dicom(frames)
        return load_stack(stacks[0]) if len(stacks) == 1 else _too_many(path, stacks)
    scans, skipped = discover_scans(path)
    if not scans:
        why = "; ".join(f"{s.relpath}: {s.reason}" for s in skipped[:3])
        raise ScanReadError(path, "folder holds no readable scan" + (f" ({why})" if why else ""))
    if len(scans) > 1:
        names = ", ".join(s.relpath for s in scans[:5])
        raise ScanReadError(path, f"folder holds {len(scans)} scans ({names}); use find_scans")
    return scans[0].load()


def write_scan(scan: Scan, path: str | Path, *, description: str = "denoised", series_offset: int = 1000,
               keep_dtype: bool = False) -> Path:
    """Write ``scan``: a path ending .nii/.nii.gz gets NIfTI, any other path is a folder that
    receives a derived DICOM series (see `write_dicom_series`; ``series_offset`` is added to the
    source's SeriesNumber). ``keep_dtype``: NIfTI from an integer NIfTI source keeps its data type
    where the values fit (`write_nifti`); DICOM always stores integers. Returns the path."""
    path = Path(path)
    if is_nifti_path(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_nifti(scan, path, keep_dtype=keep_dtype)
    write_dicom_series(scan, path, description=description, series_offset=series_offset)
    return path


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                yield Path(dirpath) / name


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom", ".ima")


def _unless_shared(scans: list[ScanSource]) -> None:
    """Clear `ScanSource.derived_folder` where that folder also holds (in it or below) another
    scan: outputs into it would lie inside one another."""
    if not any(s.derived_folder for s in scans):
        return
    holding: dict[str, int] = {}  # folder -> scans in it or below
    for s in scans:
        for folder in Path(s.relpath).parents:
            holding[folder.as_posix()] = holding.get(folder.as_posix(), 0) + 1
    for i, s in enumerate(scans):
        if s.derived_folder and holding.get(s.derived_folder, 0) > 1:
            scans[i] = dataclasses.replace(s, derived_folder="")


def _dedupe_labels(scans: list[ScanSource]) -> None:
    seen: dict[str, int] = {}
    for i, s in enumerate(scans):
        n = seen.get(s.relpath, 0)
        seen[s.relpath] = n + 1
        if n:
            scans[i] = dataclasses.replace(s, relpath=f"{s.relpath}_{n + 1}")


def _too_many(path: Path, stacks: list[DicomStack]) -> Scan:
    raise ScanReadError(path, f"file holds {len(stacks)} image stacks; read its folder with find_scans")
