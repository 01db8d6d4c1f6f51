"""``denoise export``: a learned model as a portable network file plus a JSON of everything
inference needs beyond the network.

A model directory holds

- ``network.onnx`` (ONNX, opset 18, through the ``torch.onnx`` dynamo exporter) or
  ``network.ts`` (TorchScript, through ``torch.jit.trace``), and ``isotropic.onnx``/``.ts`` for a
  model that runs another 2D network along three planes on near-isotropic volumes (mr-3d);
  dynamic shapes: any batch, any in-plane size, any number of slices;
- ``denoise-export.json`` (`inference_spec`): the input channels, intensity normalisation, the
  noise-level estimate that feeds the noise channel, neighbouring-slice context, slicing and
  tiling, expected orientation and units, post-processing, the SHA-256 of each network file and
  the checkpoint's full config (architecture, training noise, data summary, validation);
- ``MODEL_CARD.md``: the model card, where the model has one.

`denoise.load_model` (and ``denoise run -m DIR``) runs an ONNX directory through onnxruntime
with the same pre- and post-processing as the torch path (`denoise.exported`). TorchScript
archives carry code: the toolkit writes them for libtorch / C++ users and does not load them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["export_model", "inference_spec", "EXPORT_FILE", "EXPORT_FORMAT", "FORMATS", "network_file"]

EXPORT_FILE = "denoise-export.json"
EXPORT_FORMAT = "denoise-export-1"
FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
OPSET = 18
MAX_SIZE = 4096  # largest batch and spatial size the exported graphs declare
RESEARCH_USE = "Research use only; not for diagnosis."


def network_file(stem: str, fmt: str) -> str:
    """The file name of a network in an export directory (``network.onnx``, ``isotropic.ts``)."""
    return stem + FORMATS[fmt]


def export_model(model: str | Path, out_dir: str | Path, *, fmt: str = "onnx", overwrite: bool = False) -> Path:
    """Export a shipped model (by name) or a checkpoint to ``out_dir``; returns the JSON's path.

    The directory is written under a temporary name beside ``out_dir`` and renamed when complete,
    so an interrupted export leaves no half-written model. An existing non-empty ``out_dir`` is
    refused unless ``overwrite``. Raises ValueError for an unknown format, model or directory."""
    import torch

    from denoise.checkpoint import load_checkpoint
    from denoise.models.loading import resolve_checkpoint

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "onnx":
        _require("onnx", "onnxscript")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise ValueError(f"{out} exists and is not empty; choose another folder or pass overwrite (--overwrite)")
        if not (out / EXPORT_FILE).is_file():  # --overwrite replaces an earlier export, never any folder
            raise ValueError(f"{out} is not an exported model folder (no {EXPORT_FILE}); --overwrite only replaces "
                             "an earlier export: choose another folder")
    path = resolve_checkpoint(model)
    if path.is_dir():
        raise ValueError(f"{path} is already an exported model folder; export from its checkpoint (.pt)")
    net, info, _ = load_checkpoint(path)
    networks = {"network": (net, info)}
    ref = info.get("inference", {}).get("isotropic_model")
    if ref:
        iso_path = path.parent / ref if (path.parent / ref).is_file() else resolve_checkpoint(ref)
        iso_net, iso_info, _ = load_checkpoint(iso_path)
        networks["isotropic"] = (iso_net, iso_info)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the export is an ordinary folder
    try:
        hashes = {}
        for stem, (n, i) in networks.items():
            target = tmp / network_file(stem, fmt)
            with torch.no_grad():
                _write_network(n, i, target, fmt)
            hashes[stem] = sha256(target)
        card = _model_card(path)
        if card is not None:
            shutil.copyfile(card, tmp / "MODEL_CARD.md")
        name = info.get("name") or path.stem
        iso_info = networks["isotropic"][1] if "isotropic" in networks else None
        spec = inference_spec(info, name=name, fmt=fmt, hashes=hashes, isotropic_info=iso_info,
                              card="MODEL_CARD.md" if card is not None else None)
        (tmp / EXPORT_FILE).write_text(json.dumps(spec, indent=1))
        if out.is_dir() and any(out.iterdir()):  # an earlier export (checked above)
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / EXPORT_FILE


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}: pip install 'denoise[export]'")


def sha256(path: Path) -> str:
    """The full SHA-256 of a file (hex), as the export JSON records it."""
    from denoise.hashing import file_hash

    return file_hash(path, length=64)


def input_channels(model: dict[str, Any]) -> int:
    """Channels of the network's input: 2k+1 neighbouring slices for a 2.5D model (k = context;
    a slab model pads its context inside), then the noise-level channel if it has one."""
    slices = 1 + 2 * int(model.get("context", 0)) if int(model["spatial_dims"]) == 2 else 1
    return slices + int(bool(model.get("noise_channel", False)))


def _predictor(net):
    import torch

    class Predict(torch.nn.Module):  # the network's inference output (`predict`, e.g. a VAE's posterior mean)
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.predict(x)

    return Predict().eval()


def _example(info: dict[str, Any]):
    """An example input (sizes divisible by every shipped network's divisor; the padding to it is
    traced anyway, `denoise.models.autoencoder._pad_to`)."""
    import torch

    m = info["model"]
    spatial = (8, 64, 72) if int(m["spatial_dims"]) == 3 else (64, 72)
    return torch.rand(2, input_channels(m), *spatial)


def _write_network(net, info: dict[str, Any], target: Path, fmt: str) -> None:
    import warnings

    import torch

    pred, x = _predictor(net.float().cpu().eval()), _example(info)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # tracer and deprecation notes: shapes are checked by the tests
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(pred, x, check_trace=False), str(target))
        return
    from torch.export import Dim

    dims = {0: Dim("batch", min=1, max=MAX_SIZE)}
    dims.update({i: Dim(f"axis{i}", min=1, max=MAX_SIZE) for i in range(2, x.dim())})
    quiet = [logging.getLogger(n) for n in ("onnxscript", "torch.onnx", "torch.export")]
    levels = [q.level for q in quiet]
    with warnings.catch_warnings():  # the exporter's step-by-step notes are not the user's concern
        warnings.simplefilter("ignore")
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(pred, (x,), dynamo=True, dynamic_shapes={"x": dims}, input_names=["x"],
                                        output_names=["y"], opset_version=OPSET, verbose=False)
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    program.save(str(target))


def _model_card(path: Path) -> Path | None:
    card = path.with_suffix(".md")
    return card if card.is_file() else None


def inference_spec(info: dict[str, Any], *, name: str, fmt: str, hashes: dict[str, str],
                   isotropic_info: dict[str, Any] | None = None, card: str | None = None) -> dict[str, Any]:
    """The export JSON: everything a runtime needs beyond the network file, in words and numbers.

    ``info`` is the checkpoint's config; it is kept whole under ``"checkpoint"`` (what
    `denoise.load_model` rebuilds the pre- and post-processing from), and the rest spells the same
    facts out for runtimes outside Python."""
    from denoise._version import __version__
    from denoise.models.learned import isotropic_setup
    from denoise.normalize import Normalization

    m = info["model"]
    dims = int(m["spatial_dims"])
    norm = Normalization(**info["normalization"]) if info.get("normalization") else None
    k = int(m.get("context", 0))
    slab = bool(m.get("slab", False))
    patch = info.get("train", {}).get("patch_size")
    layout = "N,C,D,H,W" if dims == 3 else "N,C,H,W"
    channels = ([f"slice i{d:+d}" if d else "slice i" for d in range(-k, k + 1)] if dims == 2 else ["volume"])
    if m.get("noise_channel"):
        channels.append("noise level (constant, see preprocessing.noise_channel)")
    spec: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "denoise_version": __version__,
        "name": name,
        "research_use": RESEARCH_USE,
        "network": _network_entry("network", fmt, hashes, layout, channels),
        "preprocessing": {
            "units": ("Hounsfield units (DICOM rescale slope and intercept applied)" if norm and norm.kind == "window"
                      else "the scanner's magnitude units (any linear scale; non-negative)"),
            "orientation": ("the array as stored, (z, y, x) = (slices, rows, columns); no reorientation. 2D and "
                            "slab models take in-plane (y, x) slices along the first axis, or along another axis whose "
                            "spacing is more than 1.5x the other two (which are within 1.5x of each other): the "
                            "acquired planes, with square pixels"),
            "normalization": _normalization_entry(norm),
            "context": {"slices_each_side": k, "edges": "the edge slice repeated",
                        "where": "inside the network (slab model)" if slab else
                        ("stacked as input channels, slice i-k first" if k else "none")},
            "noise_channel": _noise_entry(bool(m.get("noise_channel")), patch, dims,
                                          float(info.get("inference", {}).get("noise_scale", 1.0))),
            "tiling": ({"kind": "sliding window", "implementation": "monai.inferers.sliding_window_inference",
                        "roi": [32, 320, 320] if slab else [96, 96, 96], "overlap": 0.25, "blend": "gaussian",
                        "note": "tiles larger than the volume are clipped to it"} if dims == 3 else
                       {"kind": "whole slices", "batch": "any"}),
            "padding": "none needed: the network pads (edge replicate) to its divisor and crops back itself",
        },
        "postprocessing": {
            "scale_back": "output * scale + offset (the normalisation's)",
            "outside_range": "voxels the normalisation clipped come back exactly as they were in the input",
            "strength": "optional blend, after scaling back: input + strength * (output - input), strength in [0, 1]",
            "non_negative": "last: if the input has no negative value, the output is clipped at 0",
        },
        "checkpoint": info,
        "card": card,
    }
    if isotropic_info is not None:
        spec["isotropic"] = {
            **_network_entry("isotropic", fmt, hashes, "N,C,H,W",
                             [f"slice i{d:+d}" if d else "slice i"
                              for d in range(-int(isotropic_info["model"].get("context", 0)),
                                             int(isotropic_info["model"].get("context", 0)) + 1)]
                             + (["noise level"] if isotropic_info["model"].get("noise_channel") else [])),
            "when": "volumes whose voxel edges are within 1.5x of each other with at least 16 voxels along every "
                    "axis: this 2D network along the three axes in turn, the three results averaged",
            "checkpoint": isotropic_info,
            "noise_scale": float(isotropic_setup(info, isotropic_info, {})[0].get("inference", {}).get("noise_scale", 1.0)),
        }
    return spec


def _network_entry(stem: str, fmt: str, hashes: dict[str, str], layout: str, channels: list[str]) -> dict[str, Any]:
    entry = {"file": network_file(stem, fmt), "format": fmt, "sha256": hashes[stem],
             "input": {"name": "x", "layout": layout, "dtype": "float32", "channels": channels},
             "output": {"name": "y", "layout": layout.replace(",C,", ",1,"), "dtype": "float32",
                        "meaning": "the denoised centre slice / volume on the normalised scale"},
             "dynamic": f"batch and every spatial axis, any size up to {MAX_SIZE}"}
    if fmt == "onnx":
        entry["opset"] = OPSET
    return entry


def _normalization_entry(norm) -> dict[str, Any]:
    if norm is None:
        return {"kind": "modality default", "note": "the checkpoint stores none: CT a window of -1000 to 1000 HU, "
                "other modalities the 99.5th foreground percentile (denoise.normalize.normalization_for)"}
    if norm.kind == "window":
        lo, hi = norm.model_range()
        return {"kind": "window", "low": norm.low, "high": norm.high, "offset": norm.low, "scale": norm.high - norm.low,
                "formula": "x = (value - offset) / scale", "model_range": [lo, hi],
                "clip": f"x clipped to [{lo}, {hi}] before the network"}
    return {"kind": "percentile", "percentile": norm.percentile, "offset": 0.0,
            "scale": (f"the {norm.percentile}th percentile of the scan's foreground voxels (those above 5% of "
                      "its 99.9th percentile), once per scan (a 4D series: over all its volumes together)"),
            "formula": "x = value / scale", "model_range": None}


def _noise_entry(present: bool, patch: int | None, dims: int, scale: float = 1.0) -> dict[str, Any]:
    if not present:
        return {"present": False}
    return {"present": True, "channel": "last",
            "estimator": ("Donoho's wavelet MAD: median(|finest db2 diagonal wavelet coefficients, zeros excluded|) / "
                          "0.6745 (PyWavelets dwtn), on the normalised centre slice"
                          + (" (volumes: averaged over up to 16 slices)" if dims == 3 else "")),
            "tiles": (f"images larger than {patch} px: the mean over up to 16 tiles of {patch} px, on a half-tile "
                      "grid, whose centre voxel is above the foreground threshold (10% of the way from the 0.5th to "
                      "the 99.5th percentile), evenly chosen" if patch else "the whole image"),
            "scale": scale, "scaled": ("in tissue the estimate is multiplied by scale before the network reads it (the "
                                       "model's operating point: below 1 it keeps more faint structure), in air it is "
                                       "kept whole: a soft mask of the slice smoothed by 2 px, above the larger of its "
                                       "foreground threshold and 3x the estimate, grown 4 px, edge blurred 3 px "
                                       "(denoise.noise_level.tissue_weight); a fixed level is used as given"),
            "per": "sample (slice or volume)", "override": "a fixed level replaces the estimate (load_model sigma=)",
            "implementation": "denoise.noise_level.with_noise_channel"}
