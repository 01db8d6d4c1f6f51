"""Folder-level workflows behind `denoise simulate`, `denoise evaluate` and `denoise train`:
load -> compute -> save, the only place besides `batch` that combines I/O with compute."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from denoise.io import ScanReadError, discover_scans
from denoise.manifest import relative_reason
from denoise.metrics import CT_DATA_RANGE, foreground_mask, psnr, ssim
from denoise.noise import add_noise, implausible_level, parse_noise
from denoise.normalize import reference_intensity
from denoise.outdir import UsageError
from denoise.pairing import ReferenceIndex, is_noise_map

__all__ = ["simulate_folder", "evaluate_folder", "train_folder", "DEFAULT_NOISE", "EVALUATION_FIELDS"]

log = logging.getLogger(__name__)
EVALUATION_FIELDS = ["scan", "psnr", "ssim", "data_range", "mask", "reason", "reference"]

# `train_folder`'s noise when neither the call, the config nor an init checkpoint sets one: blind
# over the range the shipped models cover (ct-2d's model card: 10-50% dose)
DEFAULT_NOISE = {"MR": "rician:0.01-0.09", "CT": "lowdose:0.1-0.5"}


def simulate_folder(input: str | Path, output: str | Path, noise: str, *, seed: int = 0,
                    progress: bool = True) -> dict[str, int]:
    """Write a noisy copy of every scan under ``input`` into ``output`` (same formats, mirrored).

    Scan ``k`` (in sorted relative-path order) gets seed ``seed + k``, so a rerun reproduces it.
    Outputs go where `denoise run` puts them (`denoise.scan_task.output_relpath`: a DICOM series
    as a derived series in ``output/<its relpath>/``), so `denoise run` and `evaluate_folder`
    pair them with their sources (`denoise.pairing`). A level no scanner makes
    (`denoise.noise.implausible_level`, e.g. ``rician:5``, 500%) is warned about, then simulated
    as asked.
    """
    from denoise.batch import _atomic_write, _check_usage
    from denoise.scan_task import output_relpath

    spec = parse_noise(noise)
    warning = implausible_level(spec)
    if warning:
        log.warning("--noise %s: %s", noise, warning)
    src, out = Path(input).resolve(), Path(output).resolve()
    _check_usage(src, out, "same", 1, 0, None, None, None)
    sources, _ = discover_scans(src)
    counts = {"ok": 0, "failed": 0}
    for k, s in enumerate(tqdm(sources, desc="simulate", unit="scan", disable=not progress)):
        try:
            noisy = add_noise(s.load(), noise, seed=seed + k)
            _atomic_write(noisy, out / output_relpath(s, "same"), f"simulated {noise} seed {seed + k}")
            counts["ok"] += 1
        except (ScanReadError, ValueError) as exc:
            counts["failed"] += 1
            tqdm.write(f"failed: {s.relpath}: {exc}")
    return counts


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
            rng = CT_DATA_RANGE if r.modality == "CT" else reference_intensity(r.array)
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


def train_folder(data: str | Path, out: str | Path, *, kind: str | None = None, dims: int | None = None,
                 noise: str | None = None, config: str | Path | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, modality: str | None = None, lr: float | None = None,
                 init: str | Path | None = None, resume: str | Path | None = None, device: str = "auto",
                 progress: bool = True) -> Path:
    """Train on every scan under ``data`` (via `discover_scans`); return the best checkpoint path.

    Defaults: the config's model (a 2D ``dae`` without one) on `DEFAULT_NOISE` for the scans' modality
    (MR: Rician 1-9% of the robust maximum; CT: sinogram low-dose noise at 10-50% of the scan's dose).
    A folder holding CT and MR scans needs ``modality`` ("CT" or "MR"; the others are left out).
    With ``init`` (a shipped model's name or a
    checkpoint) the run fine-tunes it on these scans: architecture, intensity scaling, patch size
    and noise come from the checkpoint unless given here or in ``config`` (a larger DAE in the
    config is grown from it, `denoise.models.grow`), and the learning rate defaults to 1e-4.
    """
    import dataclasses

    from denoise.config import ModelConfig, TrainConfig, load_config
    from denoise.normalize import Normalization, normalization_for
    from denoise.train import fit

    model_cfg, train_cfg = load_config(config) if config else (ModelConfig(), TrainConfig())
    yaml_model, yaml_train = _yaml_section(config, "model"), _yaml_section(config, "train")
    start: dict[str, Any] = {}
    if init is not None:
        from denoise.checkpoint import load_checkpoint
        from denoise.models.loading import resolve_checkpoint

        init = resolve_checkpoint(init)
        start_net, start, _ = load_checkpoint(init)
        # the checkpoint's architecture, with what the config's model section changes (growing it)
        model_cfg = dataclasses.replace(start_net.config, **yaml_model)
        kind, dims = kind or model_cfg.kind, dims or model_cfg.spatial_dims
        if (kind, dims) != (model_cfg.kind, model_cfg.spatial_dims):
            hint = (" (a config whose model section sets spatial_dims: 3 and slab: true grows a 2.5D DAE into a slab 3D one)"
                    if (kind, dims, model_cfg.spatial_dims) == ("dae", 3, 2) else "")
            raise ValueError(f"{init}: a {model_cfg.spatial_dims}D {model_cfg.kind} model; cannot fine-tune it as a {dims}D {kind}{hint}")
        inherited = {"normalization": Normalization(**start["normalization"]), "patch_size": start["train"]["patch_size"],
                     "lr": 1e-4, "noise": start["noise"]}
        train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in inherited.items() if k not in yaml_train})
    sources, _ = discover_scans(data)
    loaded = []
    for s in sources:
        try:
            loaded.append((s, s.load()))
        except ScanReadError as exc:
            tqdm.write(f"skipped for training: {exc}")
    if not loaded:
        raise ValueError(f"{data}: no readable scans to train on")
    # one model learns one intensity scale and one noise physics: CT (HU window, low-dose noise) or
    # the rest (MR and unlabelled scans: percentile scaling, Rician noise)
    is_ct = [scan.modality.upper() == "CT" for _, scan in loaded]
    if modality is None and 0 < sum(is_ct) < len(loaded):
        raise ValueError(f"{data}: {sum(is_ct)} CT and {len(loaded) - sum(is_ct)} MR/other scans; a model learns one "
                         "modality's intensity scale and noise: choose one with --modality CT or --modality MR "
                         "(the other scans are then left out)")
    mod = (modality or ("CT" if is_ct[0] else "MR")).upper()
    kept = []
    for (src, scan), ct in zip(loaded, is_ct):
        if ct == (mod == "CT"):
            kept.append((src, scan))
        else:
            tqdm.write(f"left out of training: {src.relpath} (not {mod})")
    if not kept:
        raise ValueError(f"{data}: no {mod} scans to train on")
    sources, scans = [src for src, _ in kept], [scan for _, scan in kept]
    model_cfg = dataclasses.replace(model_cfg, kind=kind or model_cfg.kind, spatial_dims=dims or model_cfg.spatial_dims)
    updates: dict[str, Any] = {"device": device}
    if noise:  # otherwise the config's, the init checkpoint's, or the modality's default
        updates["noise"] = noise
    elif not init and "noise" not in yaml_train:
        updates["noise"] = DEFAULT_NOISE[mod]
    if lr:
        updates["lr"] = lr
    if not init and "normalization" not in yaml_train:
        updates["normalization"] = normalization_for(mod)
    if init and "normalization" not in yaml_train and train_cfg.normalization.kind != normalization_for(mod).kind:
        raise ValueError(f"{init}: trained with {train_cfg.normalization.kind} intensity scaling, which does not suit "
                         f"these {mod} scans; fine-tune a model of the same modality")
    if epochs:
        updates["epochs"] = epochs
    if steps_per_epoch:
        updates["steps_per_epoch"] = steps_per_epoch
    train_cfg = dataclasses.replace(train_cfg, **updates)
    fit(model_cfg, train_cfg, scans, out, name=Path(out).name, resume=resume, init=init, progress=progress,
        data_summary={"files": [s.relpath for s in sources], **({"fine_tuned_from": start.get("name")} if init else {})})
    return Path(out) / "best.pt"


def _yaml_section(path: str | Path | None, section: str) -> dict[str, Any]:
    """A config YAML's ``section`` (``model`` or ``train``) as written; empty without a file."""
    import yaml

    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    return dict(data.get(section) or {})
