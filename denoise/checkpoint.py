"""Checkpoints: weights + a JSON config, saved with torch.save and loaded with ``weights_only=True``.

A checkpoint is a dict ``{"format", "config" (JSON text), "state_dict", ...}`` of tensors and plain
Python values only, so loading never unpickles code. The config carries the architecture, the
intensity normalisation, the noise it was trained on, a training data summary, validation metrics
and the package version: `load_checkpoint` rebuilds the model from the file alone.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from denoise.atomic import write_atomic
from denoise.config import ModelConfig, config_from_dict
from denoise.models import build_model, unwrap

__all__ = ["save_checkpoint", "load_checkpoint", "read_info", "CheckpointError"]

FORMAT = "denoise-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that is not ours, is corrupt, or carries code (refused)."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, info: dict[str, Any], *,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``info`` (must hold ``"model"``: the ModelConfig as a dict).

    ``extra`` may hold tensors / plain values (optimizer state, epoch) for resuming. The file is
    written under a temporary name and renamed, so a crash never leaves half a checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "config": json.dumps(info, default=_jsonable), "state_dict": state, **(extra or {})}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, *, map_location: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any], dict]:
    """(model in eval mode, info dict, raw payload). Refuses anything but tensors and plain data."""
    payload = _payload(Path(path), map_location)
    info = json.loads(payload["config"])
    model_cfg = config_from_dict(ModelConfig, info["model"])
    model = build_model(model_cfg)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, info, payload


def read_info(path: str | Path) -> dict[str, Any]:
    """A checkpoint's info dict (its config: ``info["model"]["kind"]`` and the rest) without
    building the network; the same refusals as `load_checkpoint`."""
    return json.loads(_payload(Path(path), "cpu", mmap=True)["config"])


def _payload(path: Path, map_location: str, mmap: bool = False) -> dict:
    """The file's dict, loaded with ``weights_only=True``; `CheckpointError` for anything else."""
    try:
        payload = torch.load(str(path), map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        detail = _one_line(exc)
        if "GLOBAL" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: refused, the file holds pickled objects beyond weights and plain data "
                                  f"({detail})") from exc
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or not a torch file: {detail})") from exc
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {_one_line(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a denoise checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    return payload


def _one_line(exc: BaseException) -> str:
    """The telling line of a (often many-line) torch.load error: the refused global, else the first line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keys = ("GLOBAL", "Unsupported global", "Unsupported operand", "invalid load key")
    telling = [ln for ln in lines if any(k in ln for k in keys)]
    return ((telling or lines or [type(exc).__name__])[0])[:240]


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint config")
