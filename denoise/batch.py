"""`denoise_folder`: denoise every scan under a folder tree, mirrored outputs, manifest, resume, Dask.

Each scan is processed by `process_scan` (a pure function of its arguments, so it runs the same
in this process or on a Dask worker). Outputs are written under a temporary name and renamed when
complete; the manifest is rewritten atomically after every scan (starting from the earlier run's
rows, so it always describes what is on disk), so a killed run loses at most the scan in flight
and ``resume=True`` finishes the job. Before anything is written the run refuses an output folder
that overlaps the input (`denoise.outdir`) and a model that cannot be loaded; while it runs it holds
an exclusive lock on the output folder. docs/reliability.md lists these promises and their tests.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from denoise.atomic import remove_leftovers, write_text_atomic
from denoise.io import ScanSource, discover_scans
from denoise.manifest import (
    MANIFEST_FIELDS,
    files_label,
    output_stamp,
    read_manifest,
    relative_reason,
    skip_row,
    still_done,
    write_manifest,
)
from denoise.outdir import OutputLock, UsageError, check_destinations, check_separate
from denoise.run_options import run_options
from denoise.scan_task import (
    BatchOptions,
    default_model_for,
    map_relpath,
    noise_relpath,
    output_relpath,
    process_paired,
    process_scan,
    reason_roots,
)

__all__ = ["denoise_folder", "process_scan", "BatchOptions", "UsageError", "MANIFEST_FIELDS", "default_model_for"]

log = logging.getLogger(__name__)


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
    uncertainty: bool = False,
    tta: bool = False,
    planes: int | None = None,
    strength: float = 1.0,
    noise_level: str = "auto",
    noise_scale: float | None = None,
    calibrate: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    num_parts: int = 1,
    part_id: int = 0,
    progress: bool = True,
    anomaly: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Denoise every DICOM series and NIfTI file under ``input`` into ``output``.

    Args:
        input: folder (or single file) to read; never modified.
        output: folder that mirrors ``input``; it may not be ``input``, lie inside it or hold it
            (symlinks followed), and only one run at a time may write into it (a lock file).
        model: shipped name (also as ``dae:NAME``), checkpoint path or classical method
            (`denoise.methods`); default: the shipped model for each scan's modality.
        device: auto, cpu, cuda or mps.
        resume: skip scans already done with the same input hash and model; redo failed/changed ones.
        reference: folder of clean scans: adds PSNR/SSIM to the manifest. Each scan is paired as
            `denoise.evaluate_folder` pairs (`denoise.pairing`: the same relative path, else a
            derived DICOM series with the series it derives from by UID); a scan without one
            gets a ``warning`` in its row and in the log.
        fmt: "same" (DICOM -> derived DICOM, NIfTI -> NIfTI) or "nifti" (everything to NIfTI).
        tile, overlap, batch_size: 3D sliding-window tile (z, y, x), overlap, tiles/slices per pass
            (None: 2 on CPU, 8 on GPU).
        noise_map: also write the removed noise (input - output) beside each output.
        uncertainty: learned models: also write a per-voxel uncertainty map beside each output
            (``_uncertainty``; DICOM: a derived series numbered source + 3000): the spread of the
            model's outputs over the four in-plane flips (`denoise.uncertainty`), in the scan's
            units; 4x the compute (3x more than the output alone).
        tta: learned models: average over the 4 in-plane flips (4x slower; the
            manifest's model reads ``NAME+tta``).
        planes: learned 2D models: 3 = on near-isotropic volumes also run along the other two
            axes and average (3x slower; `denoise.infer.LearnedDenoiser.plan`); 1 = never (mr-3d:
            its slab network everywhere). None = the model's own choice (mr-3d: three planes of
            mr-2d on near-isotropic volumes). The manifest's model reads ``NAME+3planes`` /
            ``NAME+1plane``.
        strength: blend each output with its input, 0 (unchanged) to 1 (full denoising; default);
            the manifest's model reads ``NAME+strengthS`` below 1.
        noise_level: learned models with a noise-level channel: "auto" (default) tells the network
            a map of the noise level over each slice where the scan's noise varies across the
            image, else one value per slice; "map" / "constant" force one (the manifest's model
            reads ``NAME+noisemap`` / ``NAME+constantnoise``; its ``noise_spread`` and
            ``noise_level`` columns say what each scan got: `LearnedDenoiser.with_noise_level`).
        noise_scale: learned models with a noise-level channel: tell the network this multiple of
            the noise level it estimates, in tissue, instead of the model's own (mr-2d 0.9, mr-3d's
            three planes 0.85, which keep small faint lesions; lower keeps more faint structure,
            higher smooths more). The manifest's model reads ``NAME+noisescaleF``.
        calibrate: a 4D series (fMRI time points, averages saved separately): its own still repeats
            may lower the strength to what they measure as best (`denoise.repeat_strength`; the
            manifest's ``repeat_strength`` column); False keeps the asked strength (the manifest's
            model reads ``NAME+fullstrength``).
        workers: run scans in parallel on a local Dask cluster with this many worker processes.
        scheduler: address of an existing Dask scheduler (``tcp://host:port``).
        num_parts, part_id: process only every ``num_parts``-th scan starting at ``part_id``.
        progress: show a progress bar.
        anomaly: (score, polarity): write anomaly maps instead of denoised scans
            (`denoise.anomaly_job.anomaly_folder`, which checks the arguments; model None = the
            default anomaly model, `denoise.anomaly_job.DEFAULT_ANOMALY_MODEL`).

    Returns:
        Summary dict: counts per status (``ok`` includes the reused), ``processed`` (scans run
            now), ``reused`` (scans ``resume`` kept from the earlier run), manifest path, seconds.

    Raises:
        UsageError: bad arguments, an output folder that overlaps the input, cannot be written or
            is in use by another run (`denoise.outdir.OutputLocked`), a model that cannot be
            loaded, or no scans under ``input`` (nothing written).
    """
    t0 = time.perf_counter()
    src, out = Path(input).resolve(), Path(output).resolve()
    _check_usage(src, out, fmt, num_parts, part_id, workers, scheduler, reference)
    opts = run_options(src, out, model, workers, device=device, fmt=fmt, tile=tile, overlap=overlap,
                    batch_size=batch_size, noise_map=noise_map, uncertainty=uncertainty, tta=tta, planes=planes,
                    reference=str(Path(reference).resolve()) if reference else None, strength=strength, noise_level=noise_level,
                    noise_scale=noise_scale, anomaly=anomaly, calibrate=calibrate)
    sources, skipped = discover_scans(src)
    if not sources and not any(sk.failed for sk in skipped):
        raise UsageError(f"no DICOM or NIfTI scans found under {input}"
                         + (f" ({len(skipped)} other file(s) looked at and skipped)" if skipped else " (it is empty)"))
    mine = [s for i, s in enumerate(sources) if i % num_parts == part_id]
    manifest_path = out / ("manifest.csv" if num_parts == 1 else f"manifest.part{part_id}.csv")
    summary_path = out / ("summary.json" if num_parts == 1 else f"summary.part{part_id}.json")
    mine_keys = {s.relpath for s in mine}
    collisions = {k: why for k, why in output_collisions(sources, fmt, noise_map, uncertainty).items() if k in mine_keys}
    outputs = [output_relpath(s, fmt) for s in mine if s.relpath not in collisions]
    dests = [*outputs, *(map_relpath(r, m) for r in outputs for m in ('noise', 'uncertainty')), manifest_path.name, summary_path.name]
    check_destinations(src, out, dests, [f for s in sources for f in s.files])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {output}: {exc.strerror}") from None
    # messages name OUT as the user gave it (its absolute path may name a patient)
    with OutputLock(out, num_parts, part_id, label=output):
        # only this part's outputs: parts running side by side into one folder never touch each other's files
        remove_leftovers([manifest_path, summary_path, *(out / r for r in dests)], out)
        rows = _rows_on_disk(read_manifest(manifest_path), out, {s.relpath for s in sources} | {k.relpath for k in skipped})
        previous = dict(rows)
        rows.update(_rows_not_run([s for s in mine if s.relpath in collisions], collisions,
                                  skipped if part_id == 0 else [], opts))
        todo = [s for s in mine if s.relpath not in collisions and not (
            resume and _still_done(previous.get(s.relpath), s, out, opts))]
        reused = len(mine) - len(collisions) - len(todo)
        if resume:
            log.info("--continue: %d of %d scan(s) reused from the earlier run (same input, model and options), "
                     "%d to do", reused, len(mine), len(todo))
        write_manifest(manifest_path, rows)
        _run_recorded(todo, opts, workers, scheduler, _pair_references(todo, reference), rows, previous,
                      manifest_path, progress)
        # every task has finished or been given up: a temporary still there is a killed worker's (a lost
        # node, an out-of-memory kill on a cluster), never to be renamed into place
        remove_leftovers([out / r for r in dests], out)
        counts = {k: sum(r["status"] == k for r in rows.values()) for k in ("ok", "failed", "skipped")}
        summary = {"manifest": manifest_path.name, **counts, "processed": len(todo),
                   "reused": reused, "seconds": round(time.perf_counter() - t0, 2)}
        write_text_atomic(summary_path, json.dumps(summary, indent=1))
    return summary


def _rows_not_run(collided: list[ScanSource], collisions: dict[str, str], skipped: list, opts: BatchOptions) -> dict[str, dict]:
    """Manifest rows of the scans this run does not process: failed ones whose output would collide
    with another's, and the files discovery skipped (reasons without the input's absolute path)."""
    rows = {s.relpath: {"input": s.relpath, "kind": s.kind, "status": "failed", "reason": collisions[s.relpath],
                        "files": files_label(s, Path(opts.input_root))} for s in collided}
    for sk in skipped:
        row = skip_row(sk)
        row["reason"] = relative_reason(row["reason"], reason_roots(opts))
        rows[sk.relpath] = row
    return rows


def _run_recorded(todo: list[ScanSource], opts: BatchOptions, workers: int | None, scheduler: str | None, pairs: dict,
                  rows: dict[str, dict], previous: dict[str, dict], manifest_path: Path, progress: bool) -> None:
    """Process ``todo`` (here or on Dask), rewriting the manifest after every scan so that it always
    describes the outputs on disk; a failed scan is logged and the batch goes on."""
    bar = tqdm(total=len(todo), desc="scans", unit="scan", disable=not progress)
    for row in _run(todo, opts, workers, scheduler, pairs):
        _keep_earlier_output(row, previous.get(row["input"]), manifest_path.parent)
        rows[row["input"]] = row
        write_manifest(manifest_path, rows)
        bar.update(1)
        bar.set_postfix(status=row["status"])
        if row["status"] == "failed":
            log.warning("failed: %s: %s", row.get("files") or row["input"], row["reason"])
    bar.close()


def output_collisions(sources: list[ScanSource], fmt: str, noise_map: bool, uncertainty: bool = False) -> dict[str, str]:
    """Scans whose output path would be another scan's output (or noise or uncertainty map), or lie inside another
    scan's output series folder (or hold one): the later of each pair (in relative-path order) fails
    with the reason; the earlier one is written. Without this, one output would silently replace
    another, or a series written later would replace a folder holding other outputs."""
    paths = {}  # scan -> the paths it writes
    for s in sources:
        rel = output_relpath(s, fmt)
        paths[s.relpath] = [rel, *([noise_relpath(rel)] if noise_map else []),
                            *([map_relpath(rel, "uncertainty")] if uncertainty else [])]
    claimed: dict[str, ScanSource] = {}  # output path -> the first scan writing it
    for s in sources:
        for p in paths[s.relpath]:
            claimed.setdefault(p, s)
    out: dict[str, str] = {}  # relpath of a failing scan -> reason
    for s in sources:
        for p in paths[s.relpath]:
            owner = claimed.get(p)
            if owner is not None and owner is not s:
                out[s.relpath] = f"its output {p} is also the output of {owner.relpath}; rename one of the two inputs"
                break
            parent = next((str(a) for a in Path(p).parents if str(a) in claimed and claimed[str(a)] is not s), None)
            if parent is not None:
                out[s.relpath] = (f"its output {p} would lie inside the output series folder {parent} of "
                          f"{claimed[parent].relpath}; move or rename one of the two inputs")
                break
    return out


def _still_done(old: dict[str, Any] | None, source: ScanSource, out: Path, opts: BatchOptions) -> bool:
    if not old or old.get("status") != "ok":
        return False
    try:
        return still_done(old, source, out, opts.model, opts.tta, opts.planes, opts.strength, opts.noise_map,
                          opts.uncertainty, ":".join(opts.anomaly) if opts.anomaly else "", noise_level=opts.noise_level, calibrate=opts.calibrate,
                          noise_scale=opts.noise_scale)
    except OSError:  # the input cannot be read any more: redo it, and let its row say why
        return False


def _rows_on_disk(rows: dict[str, dict[str, Any]], out: Path, inputs: set[str]) -> dict[str, dict[str, Any]]:
    """An earlier manifest's rows, less what no longer matches the disk: an ``ok`` row whose output
    is gone, or was replaced since the row was written (its `output_stamp`: a killed run, another
    part), is dropped (its scan is redone or was removed); a failed or skipped row of a file that is
    no longer under IN is dropped; a failed row's stale output cleared."""
    kept = {}
    for key, row in rows.items():
        there = bool(row.get("output")) and (out / row["output"]).exists()
        if row.get("status") == "ok" and (not there or output_stamp(out / row["output"]) != row.get("output_stamp")):
            continue
        if not there and key not in inputs:
            continue
        if row.get("output") and not there:
            row = {**row, "output": ""}
        kept[key] = row
    return kept


def _keep_earlier_output(row: dict[str, Any], old: dict[str, Any] | None, out: Path) -> None:
    """A scan that fails now but has an earlier run's output on disk: its row says so, so the
    manifest keeps describing every file in the output folder."""
    if row["status"] != "failed" or not old or not old.get("output") or not (out / old["output"]).exists():
        return
    row["output"] = old["output"]
    earlier = old.get("model") or "an earlier model"
    row["reason"] = f"{row['reason']}; the output on disk is from an earlier run ({earlier})"


def _pair_references(todo: list[ScanSource], reference: str | Path | None) -> list[tuple | None]:
    """Each scan's (reference scan, how) or (None, why not), by `denoise.pairing`; Nones without
    ``reference``. The reference tree is read once (headers only)."""
    if reference is None:
        return [None] * len(todo)
    from denoise.pairing import ReferenceIndex

    index = ReferenceIndex(discover_scans(reference)[0])
    return [index.find(s) for s in todo]


def _run(todo: list[ScanSource], opts: BatchOptions, workers: int | None, scheduler: str | None,
         pairs: list[tuple | None]):
    if not workers and not scheduler:
        for s, pair in zip(todo, pairs):  # (source, opts) without --reference, as it always was
            yield process_scan(s, opts) if pair is None else process_scan(s, opts, pair)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(process_paired, todo, pairs, opts=opts, pure=False)
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _check_usage(src: Path, out: Path, fmt: str, num_parts: int, part_id: int, workers, scheduler, reference) -> None:
    if not src.exists():
        raise UsageError(f"input {src} does not exist")
    check_separate(src, out)
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
