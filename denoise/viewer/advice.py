"""What the viewer warns about and how its sidebar keeps state (no streamlit): the CLI's warnings
(non-HU CT, a model of the other modality, noise outside a model's training range) and the rules
for the data-root scan choice, the method selection across modalities and checkpoint labels."""

from __future__ import annotations

from pathlib import PurePosixPath
from types import SimpleNamespace
from typing import Any

import numpy as np

from denoise.noise import NoiseMix, NoiseSpec, parse_noise
from denoise.normalize import hu_warning
from denoise.scan_task import modality_warning

__all__ = ["scan_warnings", "model_warnings", "noise_range_warning", "real_noise_warning", "training_noise",
           "root_choice", "carry_methods", "counterpart", "checkpoint_label", "level_help"]

REAL_NOISE_MARGIN = 1.5  # an estimated level this many times the training maximum is warned about


def scan_warnings(modality: str, array: np.ndarray) -> list[str]:
    """Warnings about the scan itself: a CT whose values do not look like Hounsfield units."""
    if modality == "CT":
        why = hu_warning(array)
        if why:
            return [f"CT {why}; the CT model and the HU windows assume Hounsfield units"]
    return []


def training_noise(info: dict[str, Any] | None) -> str | None:
    """The noise a checkpoint was trained on (``info["train"]["noise"]``, else ``info["noise"]``), or None."""
    if not info:
        return None
    spec = (info.get("train") or {}).get("noise") or info.get("noise")
    return str(spec) if spec else None


def _members(spec: str | None) -> tuple[NoiseSpec, ...]:
    if not spec:
        return ()
    try:
        parsed = parse_noise(spec)
    except ValueError:  # a checkpoint with a spec this version does not know: no verdict
        return ()
    return parsed.members if isinstance(parsed, NoiseMix) else (parsed,)


def noise_range_warning(spec: str, trained: str | None, model: str) -> str | None:
    """A warning when simulated noise ``spec`` (e.g. ``"gaussian:0.15"``) is of a kind the model never
    saw or at a level outside its training range ``trained`` (e.g. ``"rician:0.002-0.09"``); None
    when it fits or the training noise is unknown."""
    train = _members(trained)
    chosen = _members(spec)
    if not train or not chosen:
        return None
    for sel in chosen:
        same = [m for m in train if m.kind == sel.kind]
        if not same:
            kinds = "/".join(sorted({m.kind for m in train}))
            return (f"{model} was trained on {kinds} noise ({trained}), not {sel.kind}: expect a weaker result "
                    f"than on the noise it knows; compare a classical method")
        eps = 1e-9
        if not any(m.low - eps <= sel.low and sel.high <= m.high + eps for m in same):
            what = "dose fraction" if sel.kind == "lowdose" else "level"
            return (f"{sel.kind} {what} {sel.low:g}{'' if sel.low == sel.high else f'-{sel.high:g}'} is outside the "
                    f"range {model} was trained on ({trained}): expect a weaker result")
    return None


def real_noise_warning(level: float, trained: str | None, model: str) -> str | None:
    """A warning when a real scan's estimated noise ``level`` (sigma as a fraction of the reference
    intensity, the unit of MR noise specs) is well above the model's training range (by
    `REAL_NOISE_MARGIN`: the estimate is rough). Only for Gaussian/Rician training noise."""
    train = [m for m in _members(trained) if m.kind in ("rician", "gaussian")]
    if not train or not np.isfinite(level):
        return None
    top = max(m.high for m in train)
    if level <= REAL_NOISE_MARGIN * top:
        return None
    return (f"the scan's noise is estimated at about {level:.1%} of its reference intensity, above the range "
            f"{model} was trained on (up to {top:.1%}, {trained}): expect noise left in its result")


def model_warnings(label: str, trained_modality: str | None, trained_noise: str | None, modality: str, *,
                   spec: str | None = None, real_level: float | None = None) -> list[str]:
    """Every warning for one learned model (``label`` as the viewer shows it) on a scan of
    ``modality``: other modality (`denoise.scan_task.modality_warning`), then simulated noise
    ``spec`` outside its training, or a real scan's estimated ``real_level`` above it."""
    out = []
    other = modality_warning(SimpleNamespace(name=label, trained_modality=trained_modality), modality)
    if other:
        out.append(other)
    elif spec is not None:
        why = noise_range_warning(spec, trained_noise, label)
        if why:
            out.append(why)
    elif real_level is not None and modality == "MR":
        why = real_noise_warning(real_level, trained_noise, label)
        if why:
            out.append(why)
    return out


def level_help(kind: str, trained: dict[str, str | None]) -> str:
    """The noise level slider's help: what the level means and the training noise of the selected models."""
    base = ("dose fraction of the simulated scan (lower = more noise)" if kind == "lowdose"
            else "noise sigma as a fraction of the scan's reference intensity (99.5th percentile of the foreground)")
    known = [f"{name}: {spec}" for name, spec in trained.items() if spec]
    return base + ("; the selected models were trained on " + ", ".join(known) if known else "")


def _normalise_rel(text: str) -> str:
    text = text.strip().replace("\\", "/")
    if not text:
        return ""
    if text.startswith("/"):
        return text  # absolute: refused by the reader, with its own message
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    return "/".join(parts)


def root_choice(pick: str | None, typed: str, options: list[str]) -> tuple[str | None, str]:
    """Which data-root scan to read, and from where: ``(relative path, "list" | "typed")``.

    A typed path wins over the dropdown (it is the more specific wish); one that names a listed scan
    comes back as ``"list"`` so that the page can show it in the dropdown, others as ``"typed"`` (the
    page then shows the dropdown empty and disabled, so that it names no other scan)."""
    rel = _normalise_rel(typed or "")
    if not rel:
        return (pick if pick in options else (options[0] if options else None)), "list"
    return rel, ("list" if rel in options else "typed")


def counterpart(method: str, options: list[str]) -> str | None:
    """The option that does for the other modality what ``method`` does (``dae:mr-2d`` <->
    ``dae:ct-2d``), or None."""
    prefix, sep, model = method.partition(":")
    if not sep:
        return None
    swap = {"mr": "ct", "ct": "mr"}
    twin = f"{prefix}:" + "-".join(swap.get(tok, tok) for tok in model.split("-"))
    return twin if twin != method and twin in options else None


def carry_methods(previous: list[str] | None, options: list[str], default: list[str]) -> list[str]:
    """The method selection after the offered ``options`` changed (another modality): what was
    selected and is still offered stays, in order; a learned model of the other modality becomes its
    `counterpart`; ``default`` only when there was no selection yet or nothing of it carries over
    (an empty selection stays empty)."""
    if previous is None:
        return [m for m in default if m in options]
    out: list[str] = []
    for m in previous:
        keep = m if m in options else counterpart(m, options)
        if keep and keep not in out:
            out.append(keep)
    if not out and previous:
        return [m for m in default if m in options]
    return out


def checkpoint_label(filename: str) -> str:
    """How an uploaded checkpoint is named in panels and tables: its file name, marked as an upload."""
    return f"upload:{PurePosixPath(filename.replace(chr(92), '/')).name or 'checkpoint.pt'}"
