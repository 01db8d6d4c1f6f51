"""Exported models measured (issue #26 section 1): ONNX through onnxruntime against the torch path,
on the sample scans (maximum difference relative to the intensity scale) and in speed per
256 x 256 slice. `scripts/export_benchmark.py` writes the tables."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.export import export_model
from denoise.infer import denoise_array, denoise_scan, load_model
from denoise.io import discover_scans
from denoise.normalize import reference_intensity

__all__ = ["export_agreement", "export_speed"]


def _scale(array: np.ndarray, model) -> float:
    """The intensity scale differences are reported on: a CT model's window width (HU), else the
    scan's robust maximum (`reference_intensity`)."""
    norm = model.normalization
    if norm is not None and norm.kind == "window":
        return float(norm.high - norm.low)
    return reference_intensity(array)


def export_agreement(models: list[str], sample_dir: str | Path, work: str | Path | None = None) -> list[dict[str, Any]]:
    """Per (model, sample scan of the model's modality): the maximum and mean |ONNX - torch| of the
    denoised scan over the intensity scale, and the maximum |torch - input| on the same scale (what
    the model changed, for comparison)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name in models:
            folder = export_model(name, Path(tmp) / name).parent
            onnx, ref = load_model(folder, device="cpu"), load_model(name, device="cpu")
            for source in discover_scans(sample_dir)[0]:
                scan = source.load()
                if (scan.modality == "CT") != (ref.trained_modality == "CT"):
                    continue
                if scan.array.ndim == 2 and not ref.accepts_2d:
                    continue
                a, b = denoise_scan(scan, onnx).array, denoise_scan(scan, ref).array
                scale = _scale(scan.array, ref)
                rows.append({"model": name, "scan": source.relpath, "shape": "x".join(map(str, scan.array.shape)),
                             "scale": round(scale, 2), "max_diff_rel": float(np.abs(a - b).max() / scale),
                             "mean_diff_rel": float(np.abs(a - b).mean() / scale),
                             "max_change_rel": float(np.abs(b - scan.array).max() / scale)})
    return rows


def export_speed(models: list[str], *, size: int = 256, slices: int = 16, repeats: int = 3,
                 work: str | Path | None = None) -> list[dict[str, Any]]:
    """Milliseconds per ``size`` x ``size`` slice, torch vs onnxruntime, best of ``repeats``: the
    whole `denoise_array` call (normalisation, noise estimate, network, scaling back) on a
    ``slices``-slice volume, and the network alone (the same batches of the model's batch size)."""
    rng = np.random.default_rng(0)
    vol = rng.gamma(4.0, 25.0, (slices, size, size)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name in models:
            folder = export_model(name, Path(tmp) / name).parent
            row: dict[str, Any] = {"model": name, "slice": f"{size}x{size}", "slices": slices,
                                   "threads": torch.get_num_threads()}
            for runtime, model in (("torch", load_model(name, device="cpu", planes=1)),
                                   ("onnx", load_model(folder, device="cpu", planes=1))):
                row[f"{runtime}_ms_per_slice"] = _best(lambda m=model: denoise_array(vol, m, spacing=None), repeats) / slices
                x = _network_input(model, vol)
                row[f"{runtime}_network_ms_per_slice"] = _best(lambda m=model, x=x: _network(m, x), repeats) / slices
            row["onnx_speedup"] = round(row["torch_ms_per_slice"] / row["onnx_ms_per_slice"], 2)
            rows.append(row)
    return rows


def _network_input(model, vol: np.ndarray) -> torch.Tensor:
    m = model.info["model"]
    from denoise.export import input_channels

    c = input_channels(m)
    if model.spatial_dims == 3:
        return torch.from_numpy(np.repeat(vol[None, None], c, axis=1) / vol.max())
    return torch.from_numpy(np.repeat(vol[:, None], c, axis=1) / vol.max())


@torch.no_grad()
def _network(model, x: torch.Tensor) -> None:
    if model.spatial_dims == 3:
        model._volume(x)
        return
    for i in range(0, len(x), model.batch_size):
        chunk = x[i : i + model.batch_size]
        if model.channels_last:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        model.net.predict(chunk)


def _best(fn, repeats: int) -> float:
    fn()  # warm-up (onnxruntime and oneDNN pick kernels on the first call)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)
