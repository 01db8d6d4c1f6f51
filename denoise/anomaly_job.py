"""`anomaly_folder` (``denoise anomaly``): an anomaly map of every scan under a folder tree.

The batch machinery is `denoise.batch.denoise_folder`'s (discovery, the refusals, the lock on OUT,
atomic writes, manifest, ``--continue``, Dask); each scan's output is its `denoise.anomaly.anomaly_map`
instead of its denoised copy, at the same mirrored path: NIfTI as float32, DICOM as a derived series
numbered source + 4000 ("anomaly MODEL SCORE ... RESEARCH USE ONLY") with a rescale that keeps the
map's fractions. The manifest's ``anomaly`` column records ``SCORE:POLARITY``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from denoise.anomaly import POLARITIES, SCORES, anomaly_scan
from denoise.outdir import UsageError

__all__ = ["anomaly_folder", "write_anomaly", "DEFAULT_ANOMALY_MODEL", "ANOMALY_SERIES_OFFSET"]

DEFAULT_ANOMALY_MODEL = "vae-mr-2d"
ANOMALY_SERIES_OFFSET = 4000


def anomaly_folder(input: str | Path, output: str | Path, *, model: str | None = None, score: str = "residual",
                   polarity: str = "both", device: str = "auto", resume: bool = False, fmt: str = "same",
                   batch_size: int | None = None, workers: int | None = None, scheduler: str | None = None,
                   num_parts: int = 1, part_id: int = 0, progress: bool = True) -> dict[str, Any]:
    """Write an anomaly map of every DICOM series and NIfTI file under ``input`` into ``output``.

    Args:
        model: a learned model (shipped name, checkpoint or exported folder) whose reconstruction
            error is the map (default `DEFAULT_ANOMALY_MODEL`); not used with ``score="zscore"``.
        score, polarity: as `denoise.anomaly.anomaly_map` ("kl" needs a VAE).
        The other arguments are `denoise.batch.denoise_folder`'s.
    Returns:
        `denoise_folder`'s summary.
    Raises:
        UsageError: bad arguments (and everything `denoise_folder` refuses).
    """
    from denoise.batch import denoise_folder

    if score not in SCORES:
        raise UsageError(f"--score must be one of {', '.join(SCORES)}, got {score!r}")
    if polarity not in POLARITIES:
        raise UsageError(f"--polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")
    if score == "zscore":
        if model:
            raise UsageError("--score zscore uses no model; leave out -m")
    else:  # model None: the default for MR scans, chosen per scan (CT scans fail: no shipped CT autoencoder)
        from denoise.models import CLASSICAL_METHODS

        if model in CLASSICAL_METHODS:
            raise UsageError(f"anomaly maps need a learned model's reconstruction; {model!r} is a classical method")
        if score == "kl":
            from denoise.models.loading import load_model

            try:
                kind = load_model(model or DEFAULT_ANOMALY_MODEL, device="cpu").kind
            except (ValueError, FileNotFoundError) as exc:
                raise UsageError(f"model {model!r} cannot be used: {exc}") from None
            if kind != "vae":
                raise UsageError(f"--score kl needs a VAE (e.g. vae-mr-2d); {model!r} is a {kind} model")
    return denoise_folder(input, output, model=model, device=device, resume=resume, fmt=fmt, batch_size=batch_size,
                          workers=workers, scheduler=scheduler, num_parts=num_parts, part_id=part_id, progress=progress,
                          anomaly=(score, polarity))


def write_anomaly(source: Any, scan: Any, opts: Any, row: dict[str, Any]) -> None:
    """One scan of an anomaly job (`denoise.scan_task.process_scan` calls it): compute the map,
    write it atomically at the scan's output path, fill the manifest row."""
    from denoise.manifest import output_stamp, relative_reason
    from denoise.scan_task import (
        assign_new_uids,
        atomic_write,
        get_model,
        input_identities,
        modality_warning,
        output_relpath,
        reason_roots,
    )

    score, polarity = opts.anomaly
    if score != "zscore" and not opts.model and scan.modality == "CT":
        raise ValueError(f"no shipped autoencoder for CT (the default {DEFAULT_ANOMALY_MODEL} is an MR model): give a CT "
                         "autoencoder checkpoint with -m, or --score zscore")
    model = None if score == "zscore" else get_model(opts.model or DEFAULT_ANOMALY_MODEL, opts)
    name = "zscore" if model is None else model.name
    row.update(model=name, model_hash=getattr(model, "checkpoint_hash", ""), anomaly=f"{score}:{polarity}")
    warning = modality_warning(model, scan.modality)
    if warning:
        row["warning"] = relative_reason(warning, reason_roots(opts))
    assign_new_uids(scan, row)
    amap = anomaly_scan(scan, model, score=score, polarity=polarity, batch_size=opts.batch_size or 16)
    out_rel = output_relpath(source, opts.fmt)
    atomic_write(amap.with_array(amap.array, keep_fraction=True), Path(opts.output) / out_rel,
                 f"anomaly {name} {score}", input_identities(source), series_offset=ANOMALY_SERIES_OFFSET)
    row.update(status="ok", reason="", output=out_rel, output_stamp=output_stamp(Path(opts.output) / out_rel))
