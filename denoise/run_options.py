"""`denoise run`'s options, checked before anything is read or written (`run_options`): the model
name, the options only learned models take, --planes, --strength, --noise-level, --noise-scale, and
that the model loads. A bad one is a `UsageError` (exit 2) with nothing written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from denoise.outdir import UsageError
from denoise.scan_task import BatchOptions, get_model

__all__ = ["run_options"]


def run_options(src: Path, out: Path, model: str | None, workers: int | None, *, strength: float, noise_level: str,
                **fields: Any) -> BatchOptions:
    """The run's options, checked before anything is read or written: the model name (`run_model`:
    ``dae:mr-2d`` -> ``mr-2d``, an unknown name listing the valid ones), options that only learned
    models take, --planes, --strength, --noise-level, --noise-scale, and that the model loads."""
    from denoise.infer import NOISE_LEVELS, check_strength
    from denoise.methods import run_model
    from denoise.models import CLASSICAL_METHODS
    from denoise.models.learned import check_noise_scale

    model = run_model(model)
    if fields["tta"] and model in CLASSICAL_METHODS:
        raise UsageError(f"--tta is for learned models; {model!r} is a classical method")
    if fields["uncertainty"] and model in CLASSICAL_METHODS:
        raise UsageError(f"--uncertainty is for learned models (the spread of a network's outputs over flips of "
                         f"its input); {model!r} is a classical method")
    _check_planes(model, fields["planes"], CLASSICAL_METHODS)
    if noise_level not in NOISE_LEVELS:
        raise UsageError(f"--noise-level must be one of {', '.join(NOISE_LEVELS)}, got {noise_level!r}")
    if noise_level != "auto" and model in CLASSICAL_METHODS:
        raise UsageError(f"--noise-level is for learned models with a noise-level channel; {model!r} is a classical method")
    try:
        strength = check_strength(strength)
    except ValueError as exc:
        raise UsageError(f"--strength: {exc}") from None
    if fields["noise_scale"] is not None:
        try:
            fields["noise_scale"] = check_noise_scale(fields["noise_scale"])
        except ValueError as exc:
            raise UsageError(f"--noise-scale: {exc}") from None
        if model in CLASSICAL_METHODS:
            raise UsageError(f"--noise-scale is for learned models with a noise-level channel; {model!r} is a classical method")
    opts = BatchOptions(output=str(out), model=model, strength=strength, noise_level=noise_level, **fields,
                        threads=max(1, (os.cpu_count() or 1) // workers) if workers else None,
                        input_root=str(src if src.is_dir() else src.parent))
    _check_model(model, opts)
    if opts.noise_scale is not None and model is not None and not get_model(model, opts).noise_channel:
        raise UsageError(f"--noise-scale: model {model!r} has no noise-level channel to scale")
    return opts


def _check_model(model: str | None, opts: BatchOptions) -> None:
    """Load a given model once before the run (unknown name, missing, corrupt or unsafe checkpoint,
    a classical method whose package is missing): exit 2 instead of every scan failing."""
    if model is None:
        return
    try:
        get_model(model, opts)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, FileNotFoundError)) else str(exc)
        raise UsageError(f"model {model!r} cannot be used: {reason}") from None


def _check_planes(model: str | None, planes: int | None, classical: tuple[str, ...]) -> None:
    """Refuse a ``planes`` setting the model cannot take before anything is written."""
    if planes is None:
        return
    if planes not in (1, 3):
        raise UsageError(f"--planes must be 1 or 3, got {planes!r}")
    if model in classical:
        raise UsageError(f"--planes is for learned models; {model!r} is a classical method")
    if planes == 3 and model is not None:
        from denoise.models.loading import load_model

        try:
            load_model(model, device="cpu", planes=3)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"--planes 3: {exc}") from exc
