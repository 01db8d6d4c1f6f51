"""One scan of a batch run: `process_scan` reads, denoises and writes it, and returns its manifest row.

`process_scan` is a pure function of its arguments (so it runs the same in this process or on a
Dask worker) and never raises for a bad scan: whatever goes wrong becomes a ``failed`` row whose
reason names the file relative to the input folder (no absolute paths, so no patient-named parent
folders reach the manifest). Outputs are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from denoise.atomic import temp_sibling, write_atomic
from denoise.io import ScanReadError, ScanSource, discover_scans, write_scan
from denoise.io.dicom_write import needs_study_uid
from denoise.manifest import files_label, input_hash, output_stamp, relative_reason
from denoise.metrics import data_range_for, foreground_mask, psnr, ssim
from denoise.normalize import hu_warning
from denoise.outdir import identity
from denoise.realnoise import no_reference_measures

__all__ = ["BatchOptions", "process_scan", "process_paired", "default_model_for", "modality_warning", "output_relpath",
           "noise_relpath", "map_relpath", "atomic_write", "get_model", "reason_roots", "DEFAULT_MODELS",
           "assign_new_uids", "input_identities"]

log = logging.getLogger(__name__)
DEFAULT_MODELS = {"CT": "ct-2d", "MR": "mr-2d"}
# a derived DICOM series is numbered source + 1000 (`write_dicom_series`); its noise map source + 2000
NOISE_MAP_SERIES_OFFSET = 2000
UNCERTAINTY_SERIES_OFFSET = 3000  # and its uncertainty map (--uncertainty) source + 3000
_MODEL_CACHE: dict[tuple, Any] = {}


@dataclass(frozen=True)
class BatchOptions:
    """Per-scan options shared by every worker."""

    output: str
    model: str | None = None
    device: str = "cpu"
    fmt: str = "same"
    tile: tuple[int, int, int] | None = None
    overlap: float = 0.25
    batch_size: int | None = None
    noise_map: bool = False
    uncertainty: bool = False  # also write the flip-spread uncertainty map (`denoise.uncertainty`)
    reference: str | None = None
    threads: int | None = None
    tta: bool = False
    planes: int | None = None
    input_root: str = ""  # the folder relative paths refer to (reasons are made relative to it)
    strength: float = 1.0  # blend with the input: 0 = unchanged, 1 = full denoising
    noise_level: str = "auto"  # what a noise-level channel is told (`LearnedDenoiser.with_noise_level`)
    noise_scale: float | None = None  # that level times this (None: the model's own operating point)
    calibrate: bool = True  # a 4D series' still repeats may lower the strength (`denoise.repeat_strength`)
    anomaly: tuple[str, str] | None = None  # (score, polarity): write anomaly maps (`denoise.anomaly_job`)


def default_model_for(modality: str, array: np.ndarray | None = None) -> str:
    """The shipped model for a modality; unknown modality: CT when air-like values (< -500) occur."""
    if modality in DEFAULT_MODELS:
        return DEFAULT_MODELS[modality]
    if array is not None and float(np.min(array)) < -500:
        return DEFAULT_MODELS["CT"]
    return DEFAULT_MODELS["MR"]


def process_paired(source: ScanSource, reference: tuple | None, opts: BatchOptions) -> dict[str, Any]:
    """`process_scan` with its reference pairing as the second argument (for ``Client.map``)."""
    return process_scan(source, opts, reference)


def process_scan(source: ScanSource, opts: BatchOptions, reference: tuple | None = None) -> dict[str, Any]:
    """Denoise one scan and write its outputs; never raises for a bad scan (returns a failed row).

    ``reference``: with ``opts.reference``, the scan's pairing, (reference scan, how) or (None,
    why not), from `denoise.pairing.ReferenceIndex.find` (found here when not given). A scan
    without a usable reference is denoised all the same; its row's ``warning`` says why the PSNR/SSIM
    columns are empty (and the log does too)."""
    t0 = time.perf_counter()
    root = Path(opts.input_root) if opts.input_root else None
    row: dict[str, Any] = {"input": source.relpath, "kind": source.kind, "status": "failed",
                           "files": files_label(source, root)}
    threads = opts.threads or _dask_worker_threads()
    if threads:  # one worker's torch uses its own share of the cores, not all of them
        import torch

        torch.set_num_threads(threads)
    try:
        row["input_hash"] = input_hash(source)
        scan = source.load()
        row.update(modality=scan.modality, shape="x".join(map(str, scan.array.shape)))
        if opts.anomaly:
            from denoise.anomaly_job import write_anomaly

            write_anomaly(source, scan, opts, row)
        else:
            _denoise(source, scan, opts, row, reference)
    except ScanReadError as exc:
        row["reason"] = relative_reason(exc.reason, reason_roots(opts))
        if root is not None and exc.path:
            row["files"] = files_label(source, root, Path(exc.path))
    except Exception as exc:  # one bad scan never stops the batch
        row["reason"] = relative_reason(f"{type(exc).__name__}: {exc}", reason_roots(opts))
        culprit = getattr(exc, "filename", None)
        if root is not None and isinstance(culprit, str):
            row["files"] = files_label(source, root, Path(culprit))
    row["seconds"] = f"{time.perf_counter() - t0:.3f}"
    return row


def _denoise(source: ScanSource, scan, opts: BatchOptions, row: dict[str, Any], reference: tuple | None) -> None:
    """Denoise one loaded scan, write its output (and maps), and fill its manifest row."""
    from denoise.infer import denoise_scan, option_suffix

    name = opts.model or default_model_for(scan.modality, scan.array)
    denoiser = get_model(name, opts)
    row.update(model=denoiser.name + option_suffix(strength=opts.strength, noise_level=opts.noise_level,
                                                           calibrate=opts.calibrate),
               model_hash=getattr(denoiser, "checkpoint_hash", ""))
    corr = _noise_correlation(scan) if scan.modality == "MR" else float("nan")
    row["noise_corr"] = "" if np.isnan(corr) else f"{corr:.2f}"
    if opts.reference and reference is None:
        reference = _find_reference(source, Path(opts.reference))
    missing = f"PSNR/SSIM left empty (--reference): {reference[1]}" if reference and not reference[0] else None
    warnings = [w for w in (modality_warning(denoiser, scan.modality),
                            hu_warning(scan.array) if scan.modality == "CT" else None,
                            correlation_warning(corr), *scan.meta.get("read_notes", ()), missing) if w]
    if warnings:
        row["warning"] = relative_reason("; ".join(warnings), reason_roots(opts))
        log.warning("%s: %s", source.relpath, row["warning"])
    assign_new_uids(scan, row)
    den = denoise_scan(scan, denoiser, batch_size=opts.batch_size or 16, strength=opts.strength, noise_level=opts.noise_level,
                       calibrate=opts.calibrate)
    if den.meta.get("noise_spread") is not None:
        row.update(noise_spread=f"{den.meta['noise_spread']:.2f}", noise_level=den.meta["noise_level"])
    measures = no_reference_measures(scan.array, den.array)
    row["sigma_before"] = f"{measures['sigma_before']:.4g}"
    row["sigma_after"] = f"{measures['sigma_after']:.4g}"
    row["removed_image_corr"] = f"{measures['removed_image_corr']:.3f}"
    row["pattern_ratio"] = f"{measures['pattern_ratio']:.3g}"
    if den.meta.get("guarded_slices") is not None:
        row["guarded_slices"] = str(den.meta["guarded_slices"])
    if den.meta.get("repeat_strength") is not None:
        row["repeat_strength"] = f"{den.meta['repeat_strength']:.3f}"
    ref = _reference_metrics(reference[0], den) if reference and reference[0] else {}
    row.update({k: v for k, v in ref.items() if k != "reason"})
    if ref.get("reason"):  # found, but cannot be scored against
        why = relative_reason(f"PSNR/SSIM left empty (--reference): {ref['reason']}", reason_roots(opts))
        row["warning"] = "; ".join(w for w in (row.get("warning"), why) if w)
        log.warning("%s: %s", source.relpath, why)
    out_rel = output_relpath(source, opts.fmt)
    inputs = input_identities(source)
    if opts.uncertainty:  # before the output, so that the main output's rename is the last step
        spread = _uncertainty(scan, den, denoiser, opts)
        atomic_write(spread, Path(opts.output) / map_relpath(out_rel, "uncertainty"),
                     f"uncertainty {denoiser.name}", inputs, series_offset=UNCERTAINTY_SERIES_OFFSET)
        row["uncertainty"] = map_relpath(out_rel, "uncertainty")
    if opts.noise_map:
        noise = den.with_array(scan.array - den.array)
        atomic_write(noise, Path(opts.output) / noise_relpath(out_rel), f"noise map {denoiser.name}", inputs,
                     series_offset=NOISE_MAP_SERIES_OFFSET)
        row["noise_map"] = noise_relpath(out_rel)
    atomic_write(den, Path(opts.output) / out_rel, f"denoised {denoiser.name}", inputs)
    row.update(status="ok", reason="", output=out_rel, output_stamp=output_stamp(Path(opts.output) / out_rel))


def assign_new_uids(scan, row: dict[str, Any]) -> None:
    """The UIDs a scan's outputs share when the source lacks them: a new study for an anonymised
    source without one (recorded in the manifest row), a new frame of reference for every output."""
    if needs_study_uid(scan):
        scan.meta["new_study_uid"] = row["new_study_uid"] = generate_uid()
    scan.meta["new_frame_uid"] = generate_uid()


def input_identities(source: ScanSource) -> set[tuple[int, int]]:
    """The input files' `denoise.outdir.identity` (what `atomic_write` refuses to write over)."""
    return {i for i in map(identity, source.files) if i is not None}


CORRELATED_NOISE = 0.3  # lag-1 correlation above which the manifest warns


def _noise_correlation(scan) -> float:
    """Lag-1 correlation of the scan's background noise (`denoise.realnoise.noise_profile`): white
    noise 0, interpolated or filtered noise more. NaN where the background is zeroed, too small, or
    does not look like noise (chi degrees of freedom below 1.6: ghosts and other artefacts, which
    real clinical backgrounds often hold), and if the measurement fails: it never fails a scan."""
    from denoise.realnoise import noise_profile

    try:
        p = noise_profile(scan.array if scan.array.ndim <= 3 else scan.array[0])
    except Exception:  # a diagnostic only
        return float("nan")
    return p["bg_lag1"] if p["bg_dof"] >= 1.6 else float("nan")


def correlation_warning(corr: float) -> str | None:
    """A warning when the scan's noise is far from the white noise most training saw."""
    if np.isnan(corr) or corr <= CORRELATED_NOISE:
        return None
    return (f"the noise is spatially correlated (lag-1 correlation {corr:.2f} in the background; white noise: 0): "
            "zero-filled or filtered reconstruction; models trained on white noise remove less of it")


def reason_roots(opts: BatchOptions) -> list[Path]:
    """The folders whose absolute paths reasons and warnings show relative (`relative_reason`)."""
    return [Path(p) for p in (opts.input_root, opts.output, opts.reference) if p]


def get_model(name: str, opts: BatchOptions):
    """A shipped model, checkpoint, or classical method (sigma estimated per slice; no Rician
    correction, since the noise type of real data is unknown), cached per worker."""
    from denoise.models import CLASSICAL_METHODS, ClassicalDenoiser
    from denoise.models.loading import load_model

    key = (name, opts.device, opts.tile, opts.overlap, opts.batch_size, opts.tta, opts.planes, opts.noise_scale)
    if key not in _MODEL_CACHE:
        if name in CLASSICAL_METHODS:
            _MODEL_CACHE[key] = ClassicalDenoiser(name)
        else:
            kwargs = {"overlap": opts.overlap, "batch_size": opts.batch_size, "tta": opts.tta, "planes": opts.planes,
                      "noise_scale": opts.noise_scale}
            if opts.tile:
                kwargs["tile"] = tuple(opts.tile)
            _MODEL_CACHE[key] = load_model(name, device=opts.device, **kwargs)
    return _MODEL_CACHE[key]


def output_relpath(source: ScanSource, fmt: str) -> str:
    """Where a scan's output goes, relative to the output folder: a NIfTI file's relpath; a DICOM
    series' relpath (``FOLDER/LABEL``) as a series folder, or ``FOLDER/LABEL.nii.gz``. A series
    this package wrote, alone in its folder (`ScanSource.derived_folder`), goes to that folder's
    relpath instead: ``IN/a/S5_x/`` (an earlier output) -> ``OUT/a/S5_x/``, not one level deeper."""
    if source.kind == "nifti":
        return source.relpath
    rel = source.derived_folder or source.relpath
    return rel + ".nii.gz" if fmt == "nifti" else rel


def _dask_worker_threads() -> int | None:
    """The thread count of the Dask worker running this task (``dask worker --nthreads``), or None
    outside a worker. Without it every worker's torch would use every core of its node: two
    single-thread workers on 2 cores ran 1.3x slower than one (docs/benchmarks.md)."""
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def noise_relpath(rel: str) -> str:
    """Where a scan's noise map (``--noise-map``) goes, beside its output."""
    return map_relpath(rel, "noise")


def map_relpath(rel: str, what: str) -> str:
    """Where a map of a scan's output (``noise``, ``uncertainty``) goes: beside the output, named
    ``OUTPUT_WHAT`` (a NIfTI file keeps its extension)."""
    for ext in (".nii.gz", ".nii"):
        if rel.endswith(ext):
            return rel[: -len(ext)] + f"_{what}" + ext
    return rel + f"_{what}"


def _uncertainty(scan, den, denoiser, opts: BatchOptions):
    """The output's uncertainty map as a scan (`denoise.uncertainty.flip_spread`, in the scan's
    units), stored with a rescale so that fractions of a unit are kept."""
    from denoise.infer import own_output
    from denoise.uncertainty import flip_spread

    first = den.array if own_output(den.meta) else None  # the network's own output only
    spread = flip_spread(scan.array, denoiser, first=first, modality=scan.modality, spacing=scan.spacing,
                         strength=opts.strength, batch_size=opts.batch_size or 16,
                         noise_level=opts.noise_level)
    return den.with_array(spread, keep_fraction=True)


def atomic_write(scan, dest: Path, description: str, inputs: set[tuple[int, int]] | None = None, *,
                 series_offset: int = 1000) -> None:
    """Write under a temporary name beside ``dest`` and rename into place when complete.

    ``inputs`` (the input files' `denoise.outdir.identity`): refuse, as a last guard, a destination
    that is one of them under another name (the run checks every destination before it starts; this
    catches a link or mount made since). A symlink at ``dest`` is replaced, never written through.
    ``series_offset``: a DICOM series' SeriesNumber is its source's plus this.
    """
    if inputs and identity(dest) in inputs:
        raise RuntimeError(f"refusing to write {dest.name}: it is an input file under another name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()
    if dest.name.endswith((".nii", ".nii.gz")):
        write_atomic(dest, lambda tmp: write_scan(scan, tmp), ext=".nii.gz" if dest.name.endswith(".gz") else ".nii")
        return
    tmp = temp_sibling(dest)
    write_scan(scan, tmp, description=description, series_offset=series_offset)
    if dest.exists():
        old = temp_sibling(dest, "old")
        os.replace(dest, old)
        os.replace(tmp, dest)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, dest)


def _find_reference(source: ScanSource, ref_root: Path) -> tuple:
    """`denoise.pairing` for one scan on its own (`denoise_folder` pairs all scans at once)."""
    from denoise.pairing import ReferenceIndex

    return ReferenceIndex(discover_scans(ref_root)[0]).find(source)


def _reference_metrics(ref_source: ScanSource, den) -> dict[str, str]:
    """Foreground PSNR/SSIM of ``den`` against its reference, or ``{"reason": why not}``."""
    try:
        ref = ref_source.load()
    except Exception as exc:
        return {"reason": f"reference {ref_source.relpath} unreadable: {getattr(exc, 'reason', exc)}"}
    if ref.array.shape != den.array.shape:
        return {"reason": f"reference {ref_source.relpath} has shape {ref.array.shape}, the output {den.array.shape}"}
    rng = data_range_for(ref.array, den.modality)
    mask = foreground_mask(ref.array)
    return {"psnr_fg": f"{psnr(ref.array, den.array, data_range=rng, mask=mask):.3f}",
            "ssim_fg": f"{ssim(ref.array, den.array, data_range=rng, mask=mask):.4f}"}


def modality_warning(denoiser: Any, modality: str) -> str | None:
    """A warning when a learned model meets a scan of the other modality (an MR model on CT, a CT
    model on MR): it runs, but its intensity scaling and training do not fit the scan."""
    trained = getattr(denoiser, "trained_modality", None)
    if trained and modality in ("CT", "MR") and modality != trained:
        return (f"model {denoiser.name} was trained on {trained} scans and this scan is {modality}: "
                f"the result is not meaningful (use a {modality} model)")
    return None
