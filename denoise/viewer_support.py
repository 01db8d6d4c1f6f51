"""Logic behind the Streamlit viewer (no streamlit import): safe paths, uploads, planes, windows, tables."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from denoise.io import ScanReadError, discover_scans, read_scan, write_scan
from denoise.metrics import CT_DATA_RANGE, foreground_mask, psnr, ssim
from denoise.normalize import reference_intensity
from denoise.scan import Scan

__all__ = ["resolve_under_root", "scan_from_upload", "plane_slice", "window_presets", "metrics_rows",
           "scan_to_download", "MAX_UPLOAD_MB", "SAMPLE_DIR"]

MAX_UPLOAD_MB = 200
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}


def resolve_under_root(root: str | Path, relative: str) -> Path:
    """``root / relative`` resolved (symlinks followed); ValueError if it leaves ``root``.

    Absolute paths, ``..`` segments and symlinks pointing outside the root are all refused.
    """
    root_r = Path(root).resolve()
    if Path(relative).is_absolute():
        raise ValueError("absolute paths are not allowed; give a path relative to the data root")
    target = (root_r / relative).resolve()
    if target != root_r and root_r not in target.parents:
        raise ValueError(f"{relative!r} leads outside the data root")
    if not target.exists():
        raise ValueError(f"{relative!r} does not exist under the data root")
    return target


def list_scans_under(root: str | Path, *, limit: int = 500) -> list[str]:
    """Relative paths of the scans found under ``root`` (NIfTI files and DICOM series folders)."""
    scans, _ = discover_scans(root)
    out = []
    for s in scans[:limit]:
        out.append(s.relpath if s.kind == "nifti" else str(Path(s.relpath).parent))
    return sorted(set(out))


def scan_from_upload(name: str, data: bytes) -> Scan:
    """A Scan from an uploaded .nii/.nii.gz file or a .zip of one DICOM series.

    Raises:
        ValueError: too large, unsupported type, or unreadable (message says why).
    """
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise ValueError(f"upload is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB")
    lower = name.lower()
    with tempfile.TemporaryDirectory() as tmp:
        if lower.endswith((".nii", ".nii.gz")):
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            try:
                return _detach(read_scan(path))
            except ScanReadError as exc:
                raise ValueError(f"{name}: {exc.reason}") from exc
        if lower.endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for member in zf.namelist():
                        dest = (Path(tmp) / member).resolve()
                        if Path(tmp).resolve() not in dest.parents:
                            raise ValueError(f"{name}: unsafe path in zip ({member})")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as exc:
                raise ValueError(f"{name}: not a valid zip file") from exc
            try:
                return _detach(read_scan(tmp))
            except ScanReadError as exc:
                raise ValueError(f"{name}: {exc.reason}") from exc
        raise ValueError(f"{name}: upload a .nii, .nii.gz or a .zip of one DICOM series")


def plane_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2D view of a ``(y, x)`` or ``(z, y, x)`` array (4D: first volume) on a plane."""
    a = array[0] if array.ndim == 4 else array
    if a.ndim == 2:
        return a
    axis = PLANES[plane]
    index = int(np.clip(index, 0, a.shape[axis] - 1))
    img = np.take(a, index, axis=axis)
    return img[::-1] if axis != 0 else img  # superior up for coronal/sagittal


def n_slices(array: np.ndarray, plane: str) -> int:
    a = array[0] if array.ndim == 4 else array
    return 1 if a.ndim == 2 else a.shape[PLANES[plane]]


def window_presets(modality: str, image: np.ndarray) -> dict[str, tuple[float, float]]:
    """(center, width) presets: CT soft tissue/lung/bone/brain; MR (and other) auto percentiles."""
    if modality == "CT":
        return {"soft tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800), "brain": (40, 80)}
    lo, hi = np.percentile(image, [0.5, 99.5])
    return {"auto (0.5-99.5%)": ((lo + hi) / 2, max(hi - lo, 1e-6))}


def to_display(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """Window an image to uint8 for display."""
    lo = center - width / 2
    return (np.clip((img - lo) / max(width, 1e-6), 0, 1) * 255).astype(np.uint8)


def metrics_rows(clean: Scan | None, noisy: Scan, results: dict[str, tuple[np.ndarray, float]], *,
                 plane: str, index: int) -> list[dict[str, Any]]:
    """Table rows per method: PSNR/SSIM (foreground and whole) for the slice and the volume, runtime.

    Without a clean reference ("real" mode) the rows carry a noise estimate instead.
    """
    from denoise.metrics import estimate_sigma

    rows = []
    if clean is None:
        for name, (arr, secs) in {"noisy": (noisy.array, 0.0), **results}.items():
            rows.append({"method": name, "noise sigma (est.)": round(estimate_sigma(plane_slice(arr, plane, index)), 4),
                         "seconds": round(secs, 3)})
        return rows
    rng = CT_DATA_RANGE if clean.modality == "CT" else reference_intensity(clean.array)
    vol_mask = foreground_mask(clean.array)
    c2 = plane_slice(clean.array, plane, index)
    m2 = plane_slice(vol_mask, plane, index)
    for name, (arr, secs) in {"noisy": (noisy.array, 0.0), **results}.items():
        a2 = plane_slice(arr, plane, index)
        rows.append({
            "method": name,
            "PSNR fg slice": round(psnr(c2, a2, data_range=rng, mask=m2 if m2.any() else None), 2),
            "SSIM fg slice": round(ssim(c2, a2, data_range=rng, mask=m2 if m2.any() else None), 4),
            "PSNR fg volume": round(psnr(clean.array, arr, data_range=rng, mask=vol_mask), 2),
            "SSIM fg volume": round(ssim(clean.array, arr, data_range=rng, mask=vol_mask), 4),
            "PSNR whole volume": round(psnr(clean.array, arr, data_range=rng), 2),
            "data range": round(float(rng), 3),
            "seconds": round(secs, 3),
        })
    return rows


def scan_to_download(scan: Scan, name: str) -> tuple[bytes, str, str]:
    """(bytes, file name, mime): NIfTI for NIfTI/in-memory scans, a zip of the derived series for DICOM."""
    with tempfile.TemporaryDirectory() as tmp:
        if scan.meta.get("format") == "dicom":
            folder = write_scan(scan, Path(tmp) / "series", description=f"denoised {name}")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(folder.iterdir()):
                    zf.write(f, f.name)
            return buf.getvalue(), f"denoised_{name}.zip", "application/zip"
        path = write_scan(scan, Path(tmp) / f"denoised_{name}.nii.gz")
        return path.read_bytes(), path.name, "application/gzip"


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _detach(scan: Scan) -> Scan:
    """Drop the temporary path from meta (the file is gone after the upload is read)."""
    return Scan(scan.array, scan.spacing, scan.affine, scan.modality, {**scan.meta, "source": "upload"})
