"""One training harness for the whole autoencoder family.

``fit`` splits scans into train/validation *by scan*, normalises each clean scan with the
configured intensity scaling, samples foreground-weighted patches corrupted on the fly, and
optimises the model's loss (reconstruction; + KL with warm-up for the VAE; + latent L1 for the
sparse AE). Every epoch it measures validation PSNR/SSIM on fixed noisy patches, keeps the best
checkpoint, stops early, and can resume from ``last.pt``. Device auto, AMP on CUDA, DDP under
``torchrun``. Logging and a progress bar; no print.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from denoise._version import __version__
from denoise.atomic import remove_leftovers
from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.data import PatchSampler, patch_batches, precompute_lowdose_noise
from denoise.losses import beta_schedule
from denoise.metrics import psnr, ssim
from denoise.models import build_model, unwrap
from denoise.models.grow import grow_state
from denoise.models.learned import resolve_device
from denoise.noise import parse_noise
from denoise.scan import Scan
from denoise.train_report import split_lines, training_summary, write_metrics, write_summary

__all__ = ["fit", "split_scans", "prepare_volumes"]

log = logging.getLogger(__name__)


def split_scans(scans: list[Scan], val_fraction: float, seed: int,
                val_scans: tuple[int, ...] = ()) -> tuple[list[int], list[int]]:
    """Indices (train, val) split by scan: ``val_scans`` when given, else a seeded random
    ``val_fraction`` of the scans; a single scan is split by slabs along its first axis."""
    n = len(scans)
    if val_scans:
        if max(val_scans) >= n or len(val_scans) >= n:
            raise ValueError(f"val_scans {list(val_scans)} must name some but not all of the {n} training scans (0-{n - 1})")
        return [i for i in range(n) if i not in val_scans], sorted(val_scans)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def prepare_volumes(scans: list[Scan], train_cfg: TrainConfig, seed: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Normalised clean volumes (4D scans split into 3D volumes) and, for lowdose, noise fields."""
    norm = train_cfg.normalization
    vols, fields = [], []
    lowdose = parse_noise(train_cfg.noise).kind == "lowdose"
    for k, scan in enumerate(scans):
        offset, scale = norm.params(scan.array)
        arrays = scan.array.reshape(-1, *scan.array.shape[-3:]) if scan.array.ndim >= 3 else scan.array[None, None]
        for j, a in enumerate(arrays):
            vols.append(((a - offset) / scale).astype(np.float32))
            if lowdose:
                f = precompute_lowdose_noise(a, pixel_mm=scan.spacing[-1], seed=seed + 1000 * k + j,
                                             window=norm.high - norm.low)
                fields.append(f)
    return vols, (fields if lowdose else None)


def fit(model_cfg: ModelConfig, train_cfg: TrainConfig, scans: list[Scan], out_dir: str | Path, *,
        name: str = "model", resume: str | Path | None = None, init: str | Path | None = None,
        progress: bool = True, data_summary: dict[str, Any] | None = None) -> list[dict[str, float]]:
    """Train a model; write ``best.pt``, ``last.pt``, ``metrics.csv`` (per epoch, and the starting
    model's row when fine-tuning) and ``summary.json`` (best epoch, gain over the start) in
    ``out_dir``; log the split, the starting score and a warning if fine-tuning made it worse;
    return the history.

    Args:
        model_cfg, train_cfg: validated configs (saved inside the checkpoints).
        scans: clean training scans (split by scan into train/validation).
        out_dir: output folder.
        name: model name stored in the checkpoint.
        resume: a ``last.pt`` to continue from (weights, optimiser, epoch, history).
        init: a checkpoint of the same architecture whose weights start a new run (fine-tuning:
            fresh optimiser, schedule and history); a DAE may start from a smaller one (fewer
            neighbouring slices, narrower levels: `denoise.models.grow.grow_state`, same output).
        progress: show a progress bar.
        data_summary: recorded in the checkpoint (e.g. file names of the training data).
    """
    if not scans:
        raise ValueError("no training scans")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    rank, world = _dist_init()
    if rank == 0:  # temporaries a killed run's checkpoint or table writes left (rank 0 writes them all)
        remove_leftovers([out_dir / n for n in ("best.pt", "last.pt", "metrics.csv", "summary.json")], out_dir)
    torch.manual_seed(train_cfg.seed + rank)
    device = resolve_device(train_cfg.device) if world == 1 else torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    tr_idx, va_idx = split_scans(scans, train_cfg.val_fraction, train_cfg.seed, train_cfg.val_scans)
    files = (data_summary or {}).get("files")
    if rank == 0:
        for line in split_lines(tr_idx, va_idx, files if files and len(files) == len(scans) else None):
            log.info(line)
    sampler, val_noisy, val_clean = _samplers(scans, tr_idx, va_idx, model_cfg, train_cfg, rank)
    model = _start_model(model_cfg, train_cfg, device, None if resume else init)
    start = None  # the starting model's validation score (fine-tuning), the baseline of the summary
    if init and not resume and rank == 0:
        start = _validate(model, val_noisy, val_clean, device)
        log.info("starting model (%s): validation PSNR %.2f dB (noisy input %.2f dB)", Path(init).name,
                 start["val_psnr"], start["val_psnr_noisy"])
    run, history, start_epoch = _Optimisation.create(model, train_cfg, device, world, resume)
    record = _Record(out_dir, history, start, train_cfg.early_stop_patience, info={
        "name": name,
        "model": asdict(model_cfg),
        "train": {k: v for k, v in asdict(train_cfg).items() if k != "normalization"},
        "normalization": asdict(train_cfg.normalization),
        "noise": train_cfg.noise,
        "data": {**(data_summary or {}), "train_scans": tr_idx, "val_scans": va_idx},
        **({"init": _init_label(Path(init))} if init else {}),
        "version": __version__,
    })
    batches = patch_batches(sampler, train_cfg.batch_size, num_workers=train_cfg.num_workers,
                            seed=train_cfg.seed + 31 * rank, pin_memory=device.type == "cuda")
    total = train_cfg.epochs * train_cfg.steps_per_epoch
    bar = tqdm(total=total, initial=start_epoch * train_cfg.steps_per_epoch, desc=f"train {name}",
               disable=not progress or rank != 0, unit="step")
    for epoch in range(start_epoch, train_cfg.epochs):
        run.model.train()
        t0, losses = time.perf_counter(), []
        beta = beta_schedule(train_cfg.beta, epoch, train_cfg.beta_warmup_epochs)
        for _ in range(train_cfg.steps_per_epoch):
            losses.append(run.step(next(batches), beta))
            bar.update(1)
            shown = record.best if math.isfinite(record.best) else (start or {}).get("val_psnr", math.nan)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4g}", val_psnr=f"{shown:.2f}" if math.isfinite(shown) else "-")
        stop = False
        if rank == 0:
            metrics = _validate(run.kept, val_noisy, val_clean, device)
            stop = record.epoch_end(run, epoch, {"epoch": epoch, "loss": float(np.mean(losses)), **metrics,
                                                 "seconds": time.perf_counter() - t0})
        if world > 1:  # every rank stops together
            flag = torch.tensor([int(stop)], device=device if device.type == "cuda" else "cpu")
            torch.distributed.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            break
    bar.close()
    if rank == 0:
        summary, warning = training_summary(history, start)
        write_summary(out_dir, summary)
        log.info("summary: %s", summary)
        if warning:
            log.warning(warning)
    del batches  # stops the loader's worker processes
    if world > 1 and owns_group:  # leave together and shut the group down (PyTorch's documented
        torch.distributed.barrier()  # shutdown; without it one CI run saw rank 0 abort at exit)
        torch.distributed.destroy_process_group()
    return history


def _samplers(scans: list[Scan], tr_idx: list[int], va_idx: list[int], model_cfg: ModelConfig,
              train_cfg: TrainConfig, rank: int) -> tuple[PatchSampler, np.ndarray, np.ndarray]:
    """The training patch sampler and the fixed validation batch (noisy, clean)."""
    if va_idx:
        train_vols, train_fields = prepare_volumes([scans[i] for i in tr_idx], train_cfg, train_cfg.seed)
        val_vols, val_fields = prepare_volumes([scans[i] for i in va_idx], train_cfg, train_cfg.seed + 7)
    else:  # one scan: last 20% of slices validate
        vols, fields = prepare_volumes(scans, train_cfg, train_cfg.seed)
        cut = max(1, int(vols[0].shape[0] * (1 - train_cfg.val_fraction)))
        train_vols, val_vols = [vols[0][:cut]], [vols[0][cut:]]
        train_fields, val_fields = (([fields[0][:cut]], [fields[0][cut:]]) if fields else (None, None))
    c = train_cfg
    shared = dict(noise=c.noise, spatial_dims=model_cfg.spatial_dims, patch_size=c.patch_size, context=model_cfg.context,
                  noise_channel=model_cfg.noise_channel, foreground_fraction=c.foreground_fraction,
                  # validation shares the slice spacings of thick_augment (unlike the in-plane and
                  # contrast augmentations and the blobs, which it leaves out)
                  patch_depth=c.patch_depth, thick_augment=c.thick_augment, reference_noise=c.reference_noise)
    sampler = PatchSampler(train_vols, seed=c.seed + 31 * rank, noise_fields=train_fields, all_axes=c.all_axes,
                           contrast_augment=c.contrast_augment, coarse_augment=c.coarse_augment,
                           coarse_max=c.coarse_max, coarse_kspace=c.coarse_kspace, blur_augment=c.blur_augment, fine_augment=c.fine_augment, lesion_augment=c.lesion_augment,
                           lesion_weight=c.lesion_weight, noise_weighting=c.noise_weighting, **shared)
    val_noisy, val_clean = PatchSampler(val_vols, seed=c.seed + 12345, noise_fields=val_fields, **shared).batch(c.val_patches)
    return sampler, val_noisy, val_clean


def _start_model(model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device,
                 init: str | Path | None) -> torch.nn.Module:
    """A new network, with ``init``'s weights when given (grown when it is a smaller DAE)."""
    model = build_model(model_cfg).to(device)
    if init:
        start_net, start_info, _ = load_checkpoint(init)
        state = start_net.state_dict()
        if start_info["model"] != json.loads(json.dumps(asdict(model_cfg))):
            try:  # a DAE may start from a smaller one (fewer neighbouring slices, narrower levels)
                state = grow_state(state, start_net.config, model_cfg, seed=train_cfg.seed)
            except ValueError as exc:
                raise ValueError(f"{init}: its architecture differs from the configured model; cannot fine-tune from it") from exc
        model.load_state_dict(state)
    return model


class _Optimisation:
    """One run's optimisation: the network (``model``, DDP-wrapped with several processes; ``net``
    the network itself), AdamW with a cosine schedule, precision (CUDA AMP or CPU bfloat16) and
    the optional EMA of the weights (``kept``: the weights validated and saved)."""

    def __init__(self, model, opt, sched, ema, train_cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.net, self.opt, self.sched, self.ema = model, unwrap(model), opt, sched, ema
        self.cfg, self.device = train_cfg, device
        self.amp = train_cfg.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.cpu_bf16 = train_cfg.cpu_bf16 and device.type == "cpu"
        if self.cpu_bf16 and _native_bf16() is False:  # emulated bf16: ~15x slower here, and a probe's loss went astray
            log.warning("cpu_bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16/AMX); training in float32 "
                        "instead (emulated bfloat16 is much slower, not faster)")
            self.cpu_bf16 = False

    @classmethod
    def create(cls, model, train_cfg: TrainConfig, device: torch.device, world: int,
               resume: str | Path | None) -> tuple[_Optimisation, list[dict[str, float]], int]:
        """The optimisation state, restored from ``resume`` when given, the history so far and
        the epoch to start at."""
        opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        total = train_cfg.epochs * train_cfg.steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(train_cfg.ema),
                                                    use_buffers=True) if train_cfg.ema else None)
        history: list[dict[str, float]] = []
        start_epoch = 0
        if resume:
            net, _, payload = load_checkpoint(resume)
            if ema is not None:  # the checkpoint's weights are the average; the raw ones ride along
                if "raw_state" not in payload:
                    raise ValueError(f"{resume}: saved without ema; cannot resume it with ema on")
                ema.module.load_state_dict(net.state_dict())
                ema.n_averaged.fill_(int(payload["ema_n_averaged"]))
                model.load_state_dict(payload["raw_state"])
            else:
                model.load_state_dict(net.state_dict())
            opt.load_state_dict(payload["optimizer"])
            sched.load_state_dict(payload["scheduler"])
            history = [dict(zip(payload["history_keys"], row)) for row in payload["history"].tolist()]
            start_epoch = int(payload["epoch"]) + 1
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        return cls(model, opt, sched, ema, train_cfg, device), history, start_epoch

    @property
    def kept(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def step(self, batch: tuple[torch.Tensor, ...], beta: float) -> float:
        """One optimiser step on a (noisy, clean[, pixel weight]) batch; returns its loss."""
        noisy, clean, *weight = (t.to(self.device, non_blocking=True) for t in batch)
        with torch.autocast(self.device.type, enabled=self.amp or self.cpu_bf16,
                            dtype=torch.bfloat16 if self.cpu_bf16 else None):
            loss = self.net.training_loss(noisy, clean, self.cfg, beta=beta, forward=self.model,
                                          pixel_weight=weight[0] if weight else None)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)  # (a no-op scale without CUDA mixed precision)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        return float(loss.detach())


class _Record:
    """What each epoch leaves behind: the history, metrics.csv, ``best.pt`` and ``last.pt``, and
    the early-stopping count."""

    def __init__(self, out_dir: Path, history: list[dict[str, float]], start: dict[str, float] | None,
                 patience: int, info: dict[str, Any]) -> None:
        self.out_dir, self.history, self.start, self.patience, self.info = out_dir, history, start, patience, info
        self.best, self.stale = max((h["val_psnr"] for h in history), default=-math.inf), 0

    def epoch_end(self, run: _Optimisation, epoch: int, row: dict[str, float]) -> bool:
        """Record the epoch's row and checkpoints; True when training should stop early."""
        self.history.append(row)
        log.info("epoch %d %s", epoch, row)
        write_metrics(self.out_dir, self.history, self.start)
        if row["val_psnr"] > self.best:
            self.best, self.stale = row["val_psnr"], 0
            save_checkpoint(self.out_dir / "best.pt", run.kept, {**self.info, "validation": row, "history": self.history})
        else:
            self.stale += 1
        keys = sorted(self.history[0])
        save_checkpoint(self.out_dir / "last.pt", run.kept, {**self.info, "validation": row}, extra={
            "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(), "epoch": epoch,
            "history": torch.tensor([[h[k] for k in keys] for h in self.history], dtype=torch.float64),
            "history_keys": keys,
            **({"raw_state": run.net.state_dict(), "ema_n_averaged": run.ema.n_averaged.clone()} if run.ema is not None else {}),
        })
        if self.stale >= self.patience:
            log.info("early stop at epoch %d (no validation gain for %d epochs)", epoch, self.stale)
            return True
        return False


@torch.no_grad()
def _validate(model, noisy: np.ndarray, clean: np.ndarray, device: torch.device) -> dict[str, float]:
    model.eval()
    x = torch.from_numpy(noisy).to(device)
    out = model.predict(x).float().cpu().numpy()
    ps = [psnr(c[0], o[0], data_range=1.0) for c, o in zip(clean, out)]
    ss = [ssim(c[0], o[0], data_range=1.0) for c, o in zip(clean, out)]
    cfg = getattr(model, "config", None)
    k = cfg.context if cfg is not None and not cfg.slab else 0  # centre channel (2.5D context)
    noisy_ps = [psnr(c[0], n[k], data_range=1.0) for c, n in zip(clean, noisy)]
    row = {"val_psnr": float(np.mean(ps)), "val_ssim": float(np.mean(ss)), "val_psnr_noisy": float(np.mean(noisy_ps))}
    return {**row, **model.validation_measures(x)}


def _dist_init() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return (torch.distributed.get_rank() if world > 1 else 0), world


def _init_label(path: Path) -> str:
    """How a checkpoint records the one it was fine-tuned from: the file name, with its run folder
    when the name is a generic last.pt/best.pt (never the full path, which may name a user's folders)."""
    return f"{path.parent.name}/{path.name}" if path.name in ("last.pt", "best.pt") and path.parent.name else path.name


def _native_bf16() -> bool | None:
    """Whether this CPU has bfloat16 arithmetic (AVX512-BF16 or AMX); None when this torch cannot
    tell (the checks are torch.cpu internals, so their absence only skips the warning)."""
    checks = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not all(callable(c) for c in checks):
        return None
    return any(c() for c in checks)
