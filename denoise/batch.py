"""`denoise_folder`: denoise every scan under a folder tree, mirrored outputs, manifest, resume, Dask.

Each scan is processed by `process_scan` (a pure function of its arguments, so it runs the same
in this process or on a Dask worker). Outputs are written under a temporary name and renamed when
complete; the manifest is rewritten atomically after every scan, so a killed run loses at most the
scan in flight and ``resume=True`` finishes the job.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from denoise.io import ScanReadError, ScanSource, discover_scans, write_scan
from denoise.manifest import (
    MANIFEST_FIELDS,
    input_hash,
    is_leftover,
    read_manifest,
    skip_row,
    still_done,
    temp_sibling,
    write_manifest,
    write_text_atomic,
)
from denoise.metrics import CT_DATA_RANGE, estimate_sigma, foreground_mask, psnr, ssim
from denoise.normalize import hu_warning, reference_intensity

__all__ = ["denoise_folder", "process_scan", "BatchOptions", "UsageError", "MANIFEST_FIELDS", "default_model_for"]

log = logging.getLogger(__name__)
DEFAULT_MODELS = {"CT": "ct-2d", "MR": "mr-2d"}
_MODEL_CACHE: dict[tuple, Any] = {}


class UsageError(ValueError):
    """Bad arguments (CLI exit code 2): nothing has been written."""


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
    reference: str | None = None
    threads: int | None = None
    tta: bool = False
    planes: int | None = None


def default_model_for(modality: str, array: np.ndarray | None = None) -> str:
    """The shipped model for a modality; unknown modality: CT when air-like values (< -500) occur."""
    if modality in DEFAULT_MODELS:
        return DEFAULT_MODELS[modality]
    if array is not None and float(np.min(array)) < -500:
        return DEFAULT_MODELS["CT"]
    return DEFAULT_MODELS["MR"]


def denoise_folder(
    input: str | Path,
    output: str | Path,
    *,
    model: str | None = None,
    device: str = "auto",
    resume: bool = False,
    reference: str | Path | None = None,
    fmt: str = "same",
    tile: tuple[int, int, int] | None = None,
    overlap: float = 0.25,
    batch_size: int | None = None,
    noise_map: bool = False,
    tta: bool = False,
    planes: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    num_parts: int = 1,
    part_id: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Denoise every DICOM series and NIfTI file under ``input`` into ``output``.

    Args:
        input: folder (or single file) to read; never modified.
        output: folder that mirrors ``input`` (must not be ``input`` or inside it).
        model: shipped name or checkpoint path; default: the shipped model for each scan's modality.
        device: auto, cpu, cuda or mps.
        resume: skip scans already done with the same input hash and model; redo failed/changed ones.
        reference: folder of clean scans at the same relative paths: adds PSNR/SSIM to the manifest.
        fmt: "same" (DICOM -> derived DICOM, NIfTI -> NIfTI) or "nifti" (everything to NIfTI).
        tile, overlap, batch_size: 3D sliding-window tile (z, y, x), overlap, tiles/slices per pass
            (None: 2 on CPU, 8 on GPU).
        noise_map: also write the removed noise (input - output) beside each output.
        tta: learned models: average over the 4 in-plane flips (4x slower; the
            manifest's model reads ``NAME+tta``).
        planes: learned 2D models: 3 = on near-isotropic volumes also run along the other two
            axes and average (3x slower; `denoise.infer.LearnedDenoiser.plan`); 1 = never (mr-3d:
            its slab network everywhere). None = the model's own choice (mr-3d: three planes of
            mr-2d on near-isotropic volumes). The manifest's model reads ``NAME+3planes`` /
            ``NAME+1plane``.
        workers: run scans in parallel on a local Dask cluster with this many worker processes.
        scheduler: address of an existing Dask scheduler (``tcp://host:port``).
        num_parts, part_id: process only every ``num_parts``-th scan starting at ``part_id``.
        progress: show a progress bar.

    Returns:
        Summary dict: counts per status, output folder, manifest path, seconds.

    Raises:
        UsageError: bad arguments (nothing written).
    """
    t0 = time.perf_counter()
    src, out = Path(input).resolve(), Path(output).resolve()
    _check_usage(src, out, fmt, num_parts, part_id, workers, scheduler, reference)
    from denoise.models import CLASSICAL_METHODS

    if tta and model in CLASSICAL_METHODS:
        raise UsageError(f"--tta is for learned models; {model!r} is a classical method")
    _check_planes(model, planes, CLASSICAL_METHODS)
    sources, skipped = discover_scans(src)
    sources = [s for i, s in enumerate(sources) if i % num_parts == part_id]
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / ("manifest.csv" if num_parts == 1 else f"manifest.part{part_id}.csv")
    summary_path = out / ("summary.json" if num_parts == 1 else f"summary.part{part_id}.json")
    outputs = [_output_relpath(s, fmt) for s in sources]
    _remove_leftovers(out, [manifest_path, summary_path, *(out / r for r in outputs), *(out / _noise_relpath(r) for r in outputs)])
    previous = read_manifest(manifest_path) if resume else {}
    rows: dict[str, dict[str, Any]] = dict(previous)
    for sk in skipped:
        if part_id == 0:
            rows[sk.relpath] = skip_row(sk)
    opts = BatchOptions(output=str(out), model=model, device=device, fmt=fmt, tile=tile, overlap=overlap,
                        batch_size=batch_size, noise_map=noise_map, tta=tta, planes=planes,
                        reference=str(Path(reference).resolve()) if reference else None,
                        threads=max(1, (os.cpu_count() or 1) // workers) if workers else None)
    todo = []
    for s in sources:
        old = previous.get(s.relpath)
        if old and old["status"] == "ok" and still_done(old, s, out, model, tta, planes):
            continue
        todo.append(s)
    write_manifest(manifest_path, rows)
    bar = tqdm(total=len(todo), desc="scans", unit="scan", disable=not progress)
    for row in _run(todo, opts, workers, scheduler):
        rows[row["input"]] = row
        write_manifest(manifest_path, rows)
        bar.update(1)
        bar.set_postfix(status=row["status"])
        if row["status"] == "failed":
            log.warning("failed: %s: %s", row["input"], row["reason"])
    bar.close()
    counts = {k: sum(r["status"] == k for r in rows.values()) for k in ("ok", "failed", "skipped")}
    summary = {"output": str(out), "manifest": str(manifest_path), **counts, "processed": len(todo),
               "reused": len(sources) - len(todo), "seconds": round(time.perf_counter() - t0, 2)}
    write_text_atomic(summary_path, json.dumps(summary, indent=1))
    return summary


def _remove_leftovers(out: Path, dests: list[Path]) -> None:
    """Delete what a killed earlier run left half-written for these outputs: the temporaries
    (``.NAME.TAG.tmp*``) that `_atomic_write` and `write_manifest` rename when complete, and a DICOM
    series moved aside (``.NAME.TAG.old``) for its replacement. Only this part's outputs, so parts
    running side by side into one folder never touch each other's files."""
    for dest in dests:
        if not dest.parent.is_dir():
            continue
        for left in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
            if is_leftover(left, dest):
                log.info("removing %s, left half-written by an earlier run", left.relative_to(out))
                shutil.rmtree(left) if left.is_dir() else left.unlink()


def process_scan(source: ScanSource, opts: BatchOptions) -> dict[str, Any]:
    """Denoise one scan and write its outputs; never raises for a bad scan (returns a failed row)."""
    from denoise.infer import denoise_scan

    t0 = time.perf_counter()
    row: dict[str, Any] = {"input": source.relpath, "kind": source.kind, "status": "failed",
                           "input_hash": input_hash(source)}
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    try:
        scan = source.load()
        row.update(modality=scan.modality, shape="x".join(map(str, scan.array.shape)))
        name = opts.model or default_model_for(scan.modality, scan.array)
        denoiser = _get_model(name, opts)
        row.update(model=denoiser.name, model_hash=getattr(denoiser, "checkpoint_hash", ""))
        warnings = [w for w in (modality_warning(denoiser, scan.modality),
                                 hu_warning(scan.array) if scan.modality == "CT" else None) if w]
        if warnings:
            row["warning"] = "; ".join(warnings)
            log.warning("%s: %s", source.relpath, row["warning"])
        den = denoise_scan(scan, denoiser, batch_size=opts.batch_size or 16)
        row["sigma_before"] = f"{estimate_sigma(scan.array):.4g}"
        row["sigma_after"] = f"{estimate_sigma(den.array):.4g}"
        if opts.reference:
            row.update(_reference_metrics(source, den, Path(opts.reference)))
        out_rel = _output_relpath(source, opts.fmt)
        _atomic_write(den, Path(opts.output) / out_rel, f"denoised {denoiser.name}")
        if opts.noise_map:
            noise = den.with_array(scan.array - den.array)
            _atomic_write(noise, Path(opts.output) / _noise_relpath(out_rel), f"noise map {denoiser.name}")
        row.update(status="ok", reason="", output=out_rel)
    except ScanReadError as exc:
        row["reason"] = exc.reason
    except Exception as exc:  # one bad scan never stops the batch
        row["reason"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = f"{time.perf_counter() - t0:.3f}"
    return row


# --- helpers ---------------------------------------------------------------------------------


def _run(todo: list[ScanSource], opts: BatchOptions, workers: int | None, scheduler: str | None):
    if not workers and not scheduler:
        for s in todo:
            yield process_scan(s, opts)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(process_scan, todo, opts=opts, pure=False)
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _get_model(name: str, opts: BatchOptions):
    """A shipped model, checkpoint, or classical method (sigma estimated per slice; no Rician
    correction, since the noise type of real data is unknown), cached per worker."""
    from denoise.infer import load_model
    from denoise.models import CLASSICAL_METHODS, ClassicalDenoiser

    key = (name, opts.device, opts.tile, opts.overlap, opts.batch_size, opts.tta, opts.planes)
    if key not in _MODEL_CACHE:
        if name in CLASSICAL_METHODS:
            _MODEL_CACHE[key] = ClassicalDenoiser(name)
        else:
            kwargs = {"overlap": opts.overlap, "batch_size": opts.batch_size, "tta": opts.tta, "planes": opts.planes}
            if opts.tile:
                kwargs["tile"] = tuple(opts.tile)
            _MODEL_CACHE[key] = load_model(name, device=opts.device, **kwargs)
    return _MODEL_CACHE[key]


def _output_relpath(source: ScanSource, fmt: str) -> str:
    if source.kind == "nifti":
        return source.relpath
    return source.relpath + ".nii.gz" if fmt == "nifti" else source.relpath


def _noise_relpath(rel: str) -> str:
    for ext in (".nii.gz", ".nii"):
        if rel.endswith(ext):
            return rel[: -len(ext)] + "_noise" + ext
    return rel + "_noise"


def _atomic_write(scan, dest: Path, description: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.name.endswith((".nii", ".nii.gz")):
        ext = ".nii.gz" if dest.name.endswith(".gz") else ".nii"
        tmp = temp_sibling(dest, ext=ext)
        write_scan(scan, tmp)
        os.replace(tmp, dest)
        return
    tmp = temp_sibling(dest)
    write_scan(scan, tmp, description=description)
    if dest.exists():
        old = temp_sibling(dest, "old")
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


def _reference_metrics(source: ScanSource, den, ref_root: Path) -> dict[str, str]:
    from denoise.io import read_scan

    ref_path = ref_root / (source.relpath if source.kind == "nifti" else str(Path(source.relpath).parent))
    try:
        if source.kind == "nifti":
            ref = read_scan(ref_path)
        else:
            refs, _ = discover_scans(ref_path)
            match = [r for r in refs if Path(r.relpath).name == Path(source.relpath).name]
            if not match:
                return {"reason": f"no reference series at {ref_path}"}
            ref = match[0].load()
    except Exception as exc:
        return {"reason": f"reference unreadable: {exc}"}
    if ref.array.shape != den.array.shape:
        return {"reason": f"reference shape {ref.array.shape} differs"}
    rng = CT_DATA_RANGE if den.modality == "CT" else reference_intensity(ref.array)
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


def _check_planes(model: str | None, planes: int | None, classical: tuple[str, ...]) -> None:
    """Refuse a ``planes`` setting the model cannot take before anything is written."""
    if planes is None:
        return
    if planes not in (1, 3):
        raise UsageError(f"--planes must be 1 or 3, got {planes!r}")
    if model in classical:
        raise UsageError(f"--planes is for learned models; {model!r} is a classical method")
    if planes == 3 and model is not None:
        from denoise.infer import load_model

        try:
            load_model(model, device="cpu", planes=3)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"--planes 3: {exc}") from exc


def _check_usage(src: Path, out: Path, fmt: str, num_parts: int, part_id: int, workers, scheduler, reference) -> None:
    if not src.exists():
        raise UsageError(f"input {src} does not exist")
    if out == src or src in out.parents:
        raise UsageError(f"output {out} is the input folder or inside it; choose a folder outside {src}")
    if fmt not in ("same", "nifti"):
        raise UsageError(f"--format must be 'same' or 'nifti', got {fmt!r}")
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise UsageError(f"--part-id must be in [0, {num_parts}), got {part_id}")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be >= 1")
    if workers and scheduler:
        raise UsageError("use either --workers or --scheduler, not both")
    if reference and not Path(reference).exists():
        raise UsageError(f"reference {reference} does not exist")
