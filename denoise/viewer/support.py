"""Logic behind the Streamlit viewer (no streamlit import): safe paths, uploads, planes, windows, tables."""

from __future__ import annotations

import io
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from denoise.io import ScanReadError, discover_scans, read_scan
from denoise.io.nifti import is_nifti_path
from denoise.manifest import relative_reason
from denoise.metrics import data_range_for, foreground_mask, psnr, ssim
from denoise.normalize import reference_intensity
from denoise.scan import Scan

__all__ = ["blend_factor", "resolve_under_root", "read_scan_under_root", "list_scans_under", "links_outside", "scan_from_upload",
           "plane_slice", "window_presets", "metrics_rows", "noise_column", "PSNR_VOLUME", "progress_reporter",
           "MAX_UPLOAD_MB", "SAMPLE_DIR"]

MAX_UPLOAD_MB = 200
def _sample_dir() -> Path | None:
    """The sample scans the viewer offers: ``DENOISE_SAMPLE_DIR`` if set, else a source checkout's
    sample_data/; None in an installed wheel (which does not carry them: the viewer then says how
    to point it at scans)."""
    env = os.environ.get("DENOISE_SAMPLE_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "sample_data"
    return checkout if checkout.is_dir() else None


SAMPLE_DIR = _sample_dir()
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}


def resolve_under_root(root: str | Path, relative: str) -> Path:
    """``root / relative`` resolved (symlinks followed); ValueError if it leaves ``root``.

    Absolute paths, ``..`` segments and symlinks pointing outside the root are all refused.
    """
    root_r = Path(root).resolve()
    if Path(relative).is_absolute():
        raise ValueError("absolute paths are not allowed; give a path relative to the data root")
    try:
        target = (root_r / relative).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ValueError(f"{relative!r} cannot be resolved (a symlink loop?)") from exc
    if target != root_r and root_r not in target.parents:
        raise ValueError(f"{relative!r} leads outside the data root")
    if not target.exists():
        raise ValueError(f"{relative!r} does not exist under the data root")
    return target


def read_scan_under_root(root: str | Path, relative: str) -> Scan:
    """Read the scan at ``root / relative`` (a NIfTI file, a DICOM file or a folder of one series),
    opening only files that resolve inside ``root``.

    Besides the checks of `resolve_under_root`, every file under a folder is resolved before
    anything is opened: a member that is a symlink leading outside the root makes the whole
    folder refused (its content is never read), and each file of the discovered scan is checked
    again before the pixels are loaded.

    Raises:
        ValueError: the path or one of the scan's files leaves the root, or no single readable scan
            is there; the message names paths relative to the root only.
    """
    root_r = Path(root).resolve()
    target = resolve_under_root(root_r, relative)
    try:
        if target.is_file():  # resolved: the file itself lies inside the root
            return read_scan(target)
        outside = links_outside(root_r, under=target)
        if outside:
            raise ValueError(f"{outside[0]!r} leads outside the data root; refusing to read {relative!r}")
        scans, skipped = discover_scans(target)
        for source in scans:
            bad = [f for f in source.files if not _inside(root_r, f)]
            if bad:
                raise ValueError(f"{_rel(root_r, bad[0])!r} leads outside the data root; refusing to read {relative!r}")
        if len(scans) != 1:
            what = ", ".join(s.relpath for s in scans[:5]) or "; ".join(f"{k.relpath}: {k.reason}" for k in skipped[:3])
            raise ValueError(f"{relative!r} holds {len(scans)} scans" + (f" ({what})" if what else "")
                             + ("; pick one of them" if scans else ""))
        return scans[0].load()
    except ScanReadError as exc:  # reasons may quote the file (nibabel does): no server paths
        reason = relative_reason(exc.reason, [root_r])
        raise ValueError(f"{_rel(root_r, Path(exc.path))}: {reason}") from exc


def list_scans_under(root: str | Path, *, limit: int = 500) -> list[str]:
    """Relative paths of the scans found under ``root`` (NIfTI files and DICOM series folders)
    that `read_scan_under_root` accepts as far as confinement goes.

    Folders holding (at any depth) a symlink that leads outside the root are not searched, so such
    links are never opened; NIfTI files directly inside them that stay inside the root are listed.
    `links_outside` names the links left out.
    """
    root_r = Path(root).resolve()
    blocked: set[Path] = set()  # every folder from an outside link's own up to the root
    for link in links_outside(root_r):
        blocked.update(p for p in (root_r / link).parents if p == root_r or root_r in p.parents)
    out: list[str] = []

    def visit(folder: Path) -> None:
        rel_dir = folder.relative_to(root_r)
        if folder not in blocked:
            scans, _ = discover_scans(folder)
            for s in scans:
                if all(_inside(root_r, f) for f in s.files):
                    rel = rel_dir / s.relpath
                    out.append((rel if s.kind == "nifti" else rel.parent).as_posix())
            return
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir() and not entry.is_symlink():
                visit(entry)
            elif entry.is_file() and is_nifti_path(entry) and _inside(root_r, entry):
                out.append((rel_dir / entry.name).as_posix())

    visit(root_r)
    return sorted(set(out[:limit]))


def links_outside(root: str | Path, *, under: str | Path | None = None) -> list[str]:
    """Files under ``under`` (default: ``root``) that resolve outside ``root`` (symlinks), as paths
    relative to ``root``; only names are looked at, nothing is opened. Hidden names and symlinked
    folders are skipped, as scan discovery skips them."""
    root_r = Path(root).resolve()
    start = Path(under) if under is not None else root_r
    found = []
    for dirpath, dirnames, filenames in os.walk(start):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and not _inside(root_r, path):
                found.append(_rel(root_r, path))
    return found


def _inside(root_r: Path, path: Path) -> bool:
    """True when ``path`` with every symlink followed lies in the resolved root ``root_r``."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: leads nowhere readable, treated as outside
        return False
    return real == root_r or root_r in real.parents


def _rel(root_r: Path, path: Path) -> str:
    """``path`` (not resolved) relative to the root, or just its name when it is elsewhere."""
    try:
        return Path(path).relative_to(root_r).as_posix()
    except ValueError:
        return Path(path).name


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


def window_presets(modality: str, volume: np.ndarray) -> dict[str, tuple[float, float]]:
    """(center, width) presets. CT: soft tissue, lung, bone, brain (HU). MR and others, from the
    whole volume so that the window stays put while scrolling: percentiles of all voxels (auto
    0.5-99.5%, full range) and of the foreground (`denoise.metrics.foreground_mask`, by tissue:
    soft tissue = its 5-95%, for grey/white matter and organs; bright structures = its 50-99.9%,
    for fluid, fat, lesions and contrast, which the auto window saturates)."""
    if modality == "CT":
        return {"soft tissue": (40, 400), "lung": (-600, 1500), "bone": (400, 1800), "brain": (40, 80)}
    a = np.asarray(volume[0] if volume.ndim == 4 else volume, dtype=np.float32)
    step = max(1, a.size // 2_000_000)  # a percentile of ~2M voxels: the same window, a fraction of the time
    flat = a.reshape(-1)[::step]

    def window(lo: float, hi: float) -> tuple[float, float]:
        return (lo + hi) / 2, max(hi - lo, 1e-6)

    presets = {"auto (0.5-99.5%)": window(*np.percentile(flat, [0.5, 99.5]))}
    fg = foreground_mask(a).reshape(-1)[::step] if a.ndim >= 2 else None
    if fg is not None and fg.sum() > 100:
        tissue = flat[fg]
        presets["soft tissue (foreground 5-95%)"] = window(*np.percentile(tissue, [5, 95]))
        presets["bright structures (foreground 50-99.9%)"] = window(*np.percentile(tissue, [50, 99.9]))
    presets["full range"] = window(float(flat.min()), float(flat.max()))
    return presets


def to_display(img: np.ndarray, center: float, width: float) -> np.ndarray:
    """Window an image to uint8 for display."""
    lo = center - width / 2
    return (np.clip((img - lo) / max(width, 1e-6), 0, 1) * 255).astype(np.uint8)


PSNR_VOLUME = "PSNR fg volume (dB)"  # the headline column (simulate mode)


def noise_column(modality: str) -> str:
    """The real-mode metric column, with its unit: HU for CT, % of the input's reference intensity
    (the unit of MR noise levels: rician:0.05 = 5%) otherwise."""
    return "noise sigma est. (HU)" if modality == "CT" else "noise sigma est. (% of ref. intensity)"


def metrics_rows(clean: Scan | None, noisy: Scan, results: dict[str, tuple[np.ndarray, float]], *,
                 plane: str, index: int) -> list[dict[str, Any]]:
    """Table rows per method: PSNR (dB)/SSIM (foreground and whole) for the slice and the volume, runtime (s).

    Without a clean reference ("real" mode) the rows carry a noise estimate of the shown slice
    instead (`noise_column`: lower is better, though smoothing lowers it too).
    """
    from denoise.metrics import estimate_sigma

    rows = []
    if clean is None:
        ct = noisy.modality == "CT"
        scale = 1.0 if ct else 100.0 / reference_intensity(noisy.array)  # every row on the input's scale
        col = noise_column(noisy.modality)
        for name, (arr, secs) in {"noisy": (noisy.array, 0.0), **results}.items():
            sigma = estimate_sigma(plane_slice(arr, plane, index)) * scale
            rows.append({"method": name, col: round(sigma, 2 if ct else 3), "seconds": round(secs, 3)})
        return rows
    rng = data_range_for(clean.array, clean.modality)
    units = "HU" if clean.modality == "CT" else "a.u."
    vol_mask = foreground_mask(clean.array)
    c2 = plane_slice(clean.array, plane, index)
    m2 = plane_slice(vol_mask, plane, index)
    for name, (arr, secs) in {"noisy": (noisy.array, 0.0), **results}.items():
        a2 = plane_slice(arr, plane, index)
        rows.append({
            "method": name,
            "PSNR fg slice (dB)": round(psnr(c2, a2, data_range=rng, mask=m2 if m2.any() else None), 2),
            "SSIM fg slice": round(_slice_ssim(c2, a2, rng, m2), 4),
            PSNR_VOLUME: round(psnr(clean.array, arr, data_range=rng, mask=vol_mask), 2),
            "SSIM fg volume": round(ssim(clean.array, arr, data_range=rng, mask=vol_mask), 4),
            "PSNR whole volume (dB)": round(psnr(clean.array, arr, data_range=rng), 2),
            f"data range ({units})": round(float(rng), 3),
            "seconds": round(secs, 3),
        })
    return rows


def _slice_ssim(clean: np.ndarray, test: np.ndarray, rng: float, mask: np.ndarray) -> float:
    """SSIM of one shown slice; NaN for a slice thinner than the 11-voxel Gaussian window (a
    coronal/sagittal view of a volume of a few slices)."""
    if min(clean.shape) < 11:
        return float("nan")
    return ssim(clean, test, data_range=rng, mask=mask if mask.any() else None)


def progress_reporter(show, label: str, clock=time.perf_counter):
    """A `denoise_array` progress callback that calls ``show(fraction, text)`` with the steps done
    and an ETA from the rate so far (e.g. ``show = st.progress(0).progress``)."""
    start = clock()

    def report(done: int, total: int) -> None:
        elapsed = clock() - start
        left = elapsed / done * (total - done) if done else float("nan")
        eta = f", about {left:.0f} s left" if done and total > done else ""
        show(min(done / max(total, 1), 1.0), f"{label}: {done}/{total}{eta}")

    return report


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _detach(scan: Scan) -> Scan:
    """Drop the temporary path from meta (the file is gone after the upload is read)."""
    return Scan(scan.array, scan.spacing, scan.affine, scan.modality, {**scan.meta, "source": "upload"})


def blend_factor(strength: float, repeat_strength: float | None) -> float:
    """The blend towards the input the strength slider applies to a cached output: ``strength`` for
    a full-strength output; for one whose 4D series' repeats already kept ``repeat_strength`` of the
    change (`denoise.repeat_strength`), what makes the total ``min(repeat_strength, strength)``,
    as `denoise run --strength` does (the repeats choose the best blend at or below the asked one)."""
    if repeat_strength is None or repeat_strength <= 0.0:
        return float(strength)
    return float(min(repeat_strength, strength) / repeat_strength)
