"""`denoise adapt`: fine-tune a denoising model on the user's own noisy scans, with no clean targets.

Scans that hold repeated acquisitions of one image (a 4D series whose still time points differ by
noise alone: `denoise.selfsup.repeat_indices`) train by **Noise2Noise** (one repeat in, another as
target); ``method="auto"`` does this and leaves single scans out. Single scans can train by
recorrupted pairs (``"r2r"``, `denoise.selfsup.recorrupt`, with the noise level estimated or given)
or a blind-spot loss (``"blindspot"``, `denoise.selfsup.blindspot_input`, mask radius from the
noise's measured correlation), but both made the shipped models worse in the measurements.
``"sure"`` learns only one gain per convolution channel (GainTuning) with Stein's unbiased risk
estimate as the loss (`denoise.gaintune`): it needs the noise level (estimated from an MR scan's air
background, else from the scan, or given) and assumes white noise unless told its correlation.
``auto`` refuses a folder without repeats (docs/design.md has the comparison).

The run starts from a shipped model or checkpoint (``init``; by default the modality's shipped
2D model) and keeps its architecture and intensity scaling. Part of the data is held back (by
scan, or the last slices of a single scan) for a self-supervised validation loss: the same loss
on fixed patches and masks. The starting model is scored first and the best weights are kept, so
the result is never worse than the start on that loss. The run stops at the time budget, at
``max_steps`` or when the validation loss has not improved for ``patience`` evaluations.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from denoise.adapt_data import (
    MIN_EDGE,
    MIN_SLICES,
    AdaptSource,
    PatchDraw,
    blindspot_radius,
    noise_map,
    prepare_source,
    split_sources,
    sure_noise,
)
from denoise.gaintune import Gained, sure_loss
from denoise.scan import Scan
from denoise.selfsup import MAX_CORR, blindspot_input, masked_mse, recorrupt

__all__ = ["adapt", "adapt_scans", "default_minutes", "METHODS"]

METHODS = ("auto", "n2n", "r2r", "blindspot", "sure")
log = logging.getLogger(__name__)


def default_minutes(voxels: int) -> float:
    """The default time budget: 1 minute plus 1 per million voxels of noisy data, within 2-8 (a
    64x64x15x10 EPI series: 2 minutes; a 256x256x100 volume: 7.6)."""
    return float(min(8.0, max(2.0, 1.0 + voxels / 1e6)))


def adapt(input: str | Path, out: str | Path, *, init: str | Path | None = None, method: str = "auto",
          minutes: float | None = None, val_fraction: float = 0.2, radius: int | None = None, lr: float | None = None,
          batch_size: int | None = None, max_steps: int | None = None, eval_every: int = 40, patience: int = 6,
          seed: int = 0, device: str = "auto", overwrite: bool = False, progress: bool = True,
          noise_sigma: float | None = None, noise_corr: float | None = None) -> dict[str, Any]:
    """Adapt a model to the noisy scans under ``input``; write the checkpoint ``out`` (a ``.pt``
    that `denoise.load_model`, ``denoise run -m``, ``denoise bench`` and the viewer accept) and its
    model card beside it (``out`` with ``.md``). Returns the ``adapt`` record stored in the
    checkpoint (method, data used, steps, validation curve, before/after measures).

    Args:
        input: folder (or file) of noisy DICOM series / NIfTI files; read, never modified.
        out: the checkpoint to write; refused inside ``input`` or, without ``overwrite``, if it exists.
        init: a shipped model's name or a checkpoint (a ``dae``); default the modality's shipped 2D model.
        method: "auto" (= "n2n"; refuses scans without repeats), "n2n", "r2r", "blindspot" or "sure"
            (per-channel gains only, SURE loss: `denoise.gaintune`).
        minutes: wall-clock training budget (default `default_minutes` of the data).
        val_fraction: share held back for validation (by scan, or the last slices of one scan).
        radius: blind-spot mask radius (default: from the noise's measured correlation).
        lr: AdamW learning rate (default 3e-4; 1e-3 for "sure", which moves only gains); batch_size:
            patches per step (default 16 for 2D, 2 for 3D; 8 for "sure", two passes per patch).
        max_steps, eval_every, patience: step cap, validation interval (steps) and early stop.
        noise_sigma, noise_corr: single-scan methods: the noise std in the scans' own units (e.g.
            measured in a uniform region or from a repeat difference / sqrt 2) and its lag-1
            correlation between neighbouring pixels, instead of the estimates from the scans.
    """
    input, out = Path(input), Path(out)
    if input.is_dir() and out.resolve().is_relative_to(input.resolve()):
        raise ValueError(f"{out}: inside the input folder {input}, which adapt never modifies; write it elsewhere")
    _check_out(out, overwrite)
    return adapt_scans(_load_scans(input), out, init=init, method=method, minutes=minutes, val_fraction=val_fraction,
                       radius=radius, lr=lr, batch_size=batch_size, max_steps=max_steps, eval_every=eval_every,
                       patience=patience, seed=seed, device=device, overwrite=overwrite, progress=progress,
                       noise_sigma=noise_sigma, noise_corr=noise_corr)


def adapt_scans(loaded: list[tuple[str, Scan]], out: str | Path, *, init: str | Path | None = None, method: str = "auto",
                minutes: float | None = None, val_fraction: float = 0.2, radius: int | None = None, lr: float | None = None,
                batch_size: int | None = None, max_steps: int | None = None, eval_every: int = 40, patience: int = 6,
                seed: int = 0, device: str = "auto", overwrite: bool = False, progress: bool = True,
                noise_sigma: float | None = None, noise_corr: float | None = None) -> dict[str, Any]:
    """`adapt` on scans already loaded: ``(label, Scan)`` pairs (labels name them in log messages
    only). Same options and result as `adapt`."""
    from denoise.adapt_card import adapt_measures, write_card
    from denoise.checkpoint import load_checkpoint, save_checkpoint
    from denoise.models.learned import resolve_device
    from denoise.models.loading import resolve_checkpoint
    from denoise.normalize import Normalization

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if minutes is not None and not float(minutes) > 0:  # 0 would write the starting model as if adapted
        raise ValueError(f"minutes must be above 0, got {minutes!r}")
    if noise_sigma is not None and not (np.isfinite(noise_sigma) and noise_sigma > 0):  # 0 would learn the identity
        raise ValueError(f"noise sigma (--noise-sigma) must be a positive noise std in the scans' units, got {noise_sigma!r}")
    if noise_corr is not None and not 0.0 <= float(noise_corr) <= MAX_CORR:  # NaN fails this too
        raise ValueError(f"noise correlation (--noise-corr) must be a lag-1 correlation from 0 (white) to {MAX_CORR} (the most the "
                         f"correlated noise probe models), got {noise_corr!r}")
    out = Path(out)
    _check_out(out, overwrite)
    if not loaded:
        raise ValueError("no usable scans (DICOM series or NIfTI files)")
    modality = _modality(loaded, init)
    init_path = resolve_checkpoint(init or _default_init(modality))
    net, info, _ = load_checkpoint(init_path)
    cfg = net.config
    if cfg.kind != "dae":
        raise ValueError(f"{init_path.name}: a {cfg.kind} model; adapt fine-tunes denoising autoencoders (dae)")
    norm = Normalization(**info["normalization"])
    trained_ct = norm.kind == "window"
    kept = [(rel, s) for rel, s in loaded if (s.modality.upper() == "CT") == trained_ct]
    for rel, s in loaded:
        if (s.modality.upper() == "CT") != trained_ct:
            log.warning("%s left out: %s, but %s was trained on %s", rel, s.modality, init_path.stem, "CT" if trained_ct else "MR")
    if not kept:
        raise ValueError(f"modality mismatch: {init_path.stem} was trained on {'CT' if trained_ct else 'MR'} and none of the "
                         f"scans given is; choose --init of their modality")
    sources = [prepare_source(rel, s, norm, use_repeats=method in ("auto", "n2n")) for rel, s in kept]
    for s in sources:
        if s.note:
            log.info("%s: %s", s.label, s.note)
        if noise_sigma is not None:  # the user's measurement (scan units) over the estimate
            s.sigma = float(noise_sigma) / s.scale
        if noise_corr is not None:
            s.lag1 = float(noise_corr)
    paired = [s for s in sources if s.pairs]
    if method == "n2n" and not paired:
        raise ValueError("no repeated acquisitions among the scans for Noise2Noise (4D series whose time points are "
                         "repeats of one image); single scans: --method r2r or blindspot")
    if method == "auto" and not paired:
        raise ValueError("no repeated acquisitions among the scans (4D series whose time points are repeats of one "
                         "image), and from single scans self-supervised fine-tuning made every shipped model worse in "
                         "the measurements (docs/design.md, 'denoise adapt'); adapt needs repeats. For single scans: "
                         "--method sure (gains only, needs the noise level), or on your own responsibility --method r2r "
                         "or --method blindspot")
    if method == "sure":
        for s in sources:
            sure_noise(s, noise_sigma is not None, noise_corr is not None)
        if noise_sigma is None:
            log.warning("sure: the noise level is estimated (%s); SURE needs the real one, and an overestimate smooths "
                        "anatomy (real EPI: -2.4 dB with a 1.9x estimate, +0.10 to +0.38 dB with a measured level; "
                        "docs/benchmarks.md): give --noise-sigma (and --noise-corr) when you can measure them",
                        "; ".join(f"{s.sigma * s.scale:.4g} in scan units, {s.noise_how}" for s in sources[:3]))
    if method in ("r2r", "blindspot"):
        log.warning("%s from single scans: measured worse than the shipped models on every check so far (docs/design.md); "
                    "compare the result with the starting model before using it", method)
    chosen = "n2n" if method in ("auto", "n2n") else method
    if chosen == "n2n" and len(paired) < len(sources):
        log.info("Noise2Noise on %d scan(s) with repeats; %d single scan(s) left out", len(paired), len(sources) - len(paired))
    sources = paired if chosen == "n2n" else sources
    depth = int(info["train"].get("patch_depth") or cfg.patch_size) if cfg.spatial_dims == 3 else 1
    multiple = cfg.shuffle * 2 ** (len(cfg.channels) - 1)
    _check_enough(sources, depth if cfg.spatial_dims == 3 and not cfg.slab else 1, max(MIN_EDGE, multiple))
    why = ""
    if chosen == "blindspot":
        radius, why = blindspot_radius(sources) if radius is None else (radius, "radius given")
    elif chosen in ("r2r", "sure"):
        why = "; ".join(f"noise sigma {s.sigma:.4g} (model scale{', ' + s.noise_how if s.noise_how else ''}), "
                        f"lag-1 correlation {s.lag1 or 0.0:.2f}" for s in sources[:3])
    train_src, val_src, split_how = split_sources(sources, val_fraction, seed, depth=depth if cfg.spatial_dims == 3 else 1)
    voxels = sum(v.size for s in sources for v in s.volumes)
    budget = default_minutes(voxels) if minutes is None else float(minutes)
    patch = int(info["train"].get("patch_size") or 64)
    kw = {"spatial_dims": cfg.spatial_dims, "context": cfg.context if cfg.spatial_dims == 2 else 0, "patch": patch,
          "depth": depth, "multiple": multiple}
    draw = PatchDraw(train_src, seed=seed, **kw)
    bs = batch_size or (8 if chosen == "sure" else 16 if cfg.spatial_dims == 2 else 2)
    lr = lr if lr is not None else 1e-3 if chosen == "sure" else 3e-4
    val_in, val_tgt, val_noise = PatchDraw(val_src, seed=seed + 1, **kw).batch(max(bs, 32 if cfg.spatial_dims == 2 else 6))
    dev = resolve_device(device)
    start_net = copy.deepcopy(net).eval()  # the starting model, for the before/after measures
    net = net.to(dev)
    noise_patch = patch if cfg.noise_channel else None
    gen = torch.Generator().manual_seed(seed + 2)
    centre = cfg.context if cfg.spatial_dims == 2 else 0
    # "sure" scores the network as inference runs it: told the checkpoint's operating point
    op = float(info.get("inference", {}).get("noise_scale", 1.0)) if chosen == "sure" else 1.0
    val_batch = _prepare(val_in, val_tgt, val_noise, chosen, radius, cfg.noise_channel, noise_patch, centre, gen, op)
    loss = _loss
    if chosen == "sure":  # only the gains learn; they are folded into the weights at the end
        loss, net = _sure(centre, val_in.shape[1]), Gained(net)

    log.info("adapt %s from %s: %d volume(s) of %d scan(s)%s; %s; budget %.1f min", chosen, init_path.stem,
             sum(len(s.volumes) for s in sources), len(sources), f" ({why})" if why else "", split_how, budget)

    def batch() -> tuple:
        return _prepare(*draw.batch(bs), chosen, radius, cfg.noise_channel, noise_patch, centre, gen, op)

    fit = _fit(net, batch, list(_chunks(val_batch, bs)), dev, lr=lr, budget=budget, max_steps=max_steps,
               eval_every=eval_every, patience=patience, label=chosen, progress=progress, loss=loss, seed=seed)
    best_state, curve, step, stopped, seconds = fit["state"], fit["curve"], fit["steps"], fit["stopped"], fit["seconds"]
    start_loss, best_step = curve[0][1], fit["best_step"]
    best_loss = min(v for _, v in curve)
    net.load_state_dict(best_state)
    net = (net.fold() if isinstance(net, Gained) else net).cpu().eval()
    measures = adapt_measures(val_src, start_net, net, info)
    record = {
        "method": chosen, "radius": radius if chosen == "blindspot" else None, "noise_model": why or None,
        "scans": len(sources), "repeat_scans": len(paired) if chosen == "n2n" else 0,
        "pairs": sum(len(s.volumes) * (len(s.volumes) - 1) for s in sources) if chosen == "n2n" else 0,
        "volumes": sum(len(s.volumes) for s in sources), "slices": sum(s.slices * len(s.volumes) for s in sources),
        "modality": "CT" if trained_ct else "MR", "shapes": sorted({"x".join(map(str, s.volumes[0].shape)) for s in sources}),
        "notes": sorted({s.note for s in sources if s.note}), "split": split_how,
        "steps": step, "best_step": best_step, "stopped": stopped, "seconds": round(seconds, 1), "budget_minutes": budget,
        "lr": lr, "batch_size": bs, "patch": draw.patch, "start_val_loss": start_loss, "best_val_loss": best_loss,
        "val_curve": curve, "measures": measures, "init": init_path.name,
    }
    inference = {k: v for k, v in info.get("inference", {}).items() if k != "isotropic_model"}  # the adapted net everywhere
    new_info = {k: v for k, v in info.items() if k not in ("validation", "history", "inference")}
    new_info.update({"name": out.stem, "init": init_path.name, "adapt": record, **({"inference": inference} if inference else {})})
    save_checkpoint(out, net, new_info)
    write_card(out.with_suffix(".md"), new_info)
    log.info("adapted: validation loss %.4g -> %.4g (step %d of %d, %s) -> %s", start_loss, best_loss, best_step, step, stopped, out)
    return record


def _fit(net: torch.nn.Module, batch, val: list[tuple], dev: torch.device, *, lr: float, budget: float,
         max_steps: int | None, eval_every: int, patience: int, label: str, progress: bool, loss=None,
         seed: int = 0) -> dict[str, Any]:
    """The fine-tuning loop: AdamW on the trainable parameters and ``batch()`` until the time
    budget (minutes), ``max_steps`` or ``patience`` validations without gain; the starting weights
    are validated first and the best weights (possibly those) are returned with the validation
    curve [[step, loss], ...]. ``loss(net, batch, device, generator)`` (default `_loss`); validation
    draws its random probes from the same seed every time, so its values compare."""
    loss = loss or _loss
    gen = torch.Generator().manual_seed(seed + 3)

    def validate() -> float:
        net.eval()
        g = torch.Generator().manual_seed(seed + 4)
        with torch.no_grad():
            return float(np.mean([loss(net, b, dev, g).item() for b in val]))

    best_loss = validate()
    best_state, best_step, curve = copy.deepcopy(net.state_dict()), 0, [[0, best_loss]]
    log.info("start validation loss %.4g", best_loss)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    t0, step, stale, stopped = time.perf_counter(), 0, 0, "budget"
    # a bar over the time budget (or the step cap): the ETA is the budget's
    bar = tqdm(total=max_steps or round(60 * budget), unit="step" if max_steps else "s", desc=f"adapt ({label})",
               disable=not progress)
    while step < (max_steps or 10**9):
        elapsed = time.perf_counter() - t0
        if elapsed > 60.0 * budget:
            break
        net.train()
        value = loss(net, batch(), dev, gen)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        step += 1
        bar.update(1 if max_steps else min(round(time.perf_counter() - t0), bar.total) - bar.n)
        if step % eval_every == 0:
            v = validate()
            curve.append([step, v])
            if v < best_loss:
                best_loss, best_step, stale = v, step, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
            bar.set_postfix(step=step, val_loss=f"{v:.4g}", best=f"{best_loss:.4g}")
            if stale >= patience:
                stopped = "early stop"
                break
    else:
        stopped = "max_steps"
    bar.close()
    return {"state": best_state, "curve": curve, "steps": step, "best_step": best_step, "stopped": stopped,
            "seconds": time.perf_counter() - t0}


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix != ".pt":
        raise ValueError(f"{out}: the checkpoint to write must end in .pt")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; choose another name or pass --overwrite")


def _prepare(inp: np.ndarray, tgt: np.ndarray, noise: np.ndarray, method: str, radius: int, noise_channel: bool,
             noise_patch: int | None, centre: int, gen: torch.Generator, scale: float = 1.0) -> tuple:
    """(network input, target, blind-spot centres or None) for one batch: Noise2Noise pairs as
    drawn, recorrupted pairs (`recorrupt`), or a blind-spot mask (`blindspot_input`); for "sure"
    (network input, noise sigma, noise lag-1 correlation). The noise-level channel is estimated on
    the network's input, as at inference (times ``scale``, the model's operating point)."""
    x, t, centres = torch.from_numpy(inp), torch.from_numpy(tgt), None
    if method == "blindspot":
        x, centres = blindspot_input(x, radius, generator=gen)
    elif method == "r2r":
        x, target = recorrupt(x, torch.from_numpy(noise[:, 0]), torch.from_numpy(noise[:, 1]), generator=gen)
        t = target[:, centre : centre + 1].contiguous()
    if noise_channel:
        x = torch.cat([x, torch.from_numpy(noise_map((x.numpy() if method == "r2r" else inp), noise_patch, scale))], dim=1)
    if method == "sure":
        return x, torch.from_numpy(noise[:, 0].copy()), torch.from_numpy(noise[:, 1].copy())
    return x, t, centres


def _loss(net: torch.nn.Module, batch: tuple, dev: torch.device, gen: torch.Generator | None = None) -> torch.Tensor:
    x, tgt, centres = batch
    out = net(x.to(dev))
    if centres is None:
        return torch.mean((out - tgt.to(dev)) ** 2)
    return masked_mse(out, tgt.to(dev), centres.to(dev))


def _sure(centre: int, image_channels: int):
    """The "sure" loss for `_fit`: `sure_loss` over tissue (any intensity above 4 sigma)."""
    def loss(net: torch.nn.Module, batch: tuple, dev: torch.device, gen: torch.Generator | None = None) -> torch.Tensor:
        x, sigma, rho = batch
        return sure_loss(net, x.to(dev), centre, sigma, rho, 0.0, gen, image_channels=image_channels)
    return loss


def _chunks(batch: tuple, size: int):
    n = batch[0].shape[0]
    for i in range(0, n, size):
        yield tuple(None if t is None else t[i : i + size] for t in batch)


def _load_scans(input: Path) -> list[tuple[str, Any]]:
    from denoise.io import ScanReadError, discover_scans

    sources, skipped = discover_scans(input)
    for s in skipped:
        log.warning("%s skipped: %s", s.relpath, s.reason)
    loaded = []
    for src in sources:
        try:
            loaded.append((src.relpath, src.load()))
        except ScanReadError as exc:
            log.warning("%s", exc)
    if not loaded:
        raise ValueError(f"no usable scans under {input} (DICOM series or NIfTI files)")
    return loaded


def _modality(loaded: list[tuple[str, Any]], init: str | Path | None) -> str:
    mods = {"CT" if s.modality.upper() == "CT" else "MR" for _, s in loaded}
    if init is None and len(mods) > 1:
        raise ValueError("the folder holds CT and MR scans; a model adapts to one modality: choose one with --init "
                         "(ct-2d or mr-2d, or a checkpoint); the other scans are then left out")
    return mods.pop() if len(mods) == 1 else "MR"


def _default_init(modality: str) -> str:
    from denoise.scan_task import DEFAULT_MODELS

    return DEFAULT_MODELS["CT" if modality == "CT" else "MR"]


def _check_enough(sources: list[AdaptSource], min_depth: int, edge: int) -> None:
    usable = [s for s in sources if min(s.volumes[0].shape[1:]) >= edge and s.slices >= min_depth]
    slices = sum(s.slices * len(s.volumes) for s in usable)
    if slices < MIN_SLICES or not usable:
        raise ValueError(f"too little data to learn from: {slices} slice(s) of at least {edge}x{edge} pixels, at least "
                         f"{MIN_SLICES} needed (a larger series, more scans, or repeats)")
    if len(usable) < len(sources):
        raise ValueError(f"{len(sources) - len(usable)} scan(s) smaller than {edge}x{edge} pixels in-plane; remove them "
                         "from the input folder")
