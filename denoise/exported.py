"""Running an exported model (`denoise.export`) through onnxruntime.

`load_exported` reads ``denoise-export.json``, checks each network file against its SHA-256, and
returns a `denoise.infer.LearnedDenoiser` whose network is an `OnnxNetwork`: the normalisation,
noise-level channel, slice context, slicing, three-plane and sliding-window logic are the torch
path's own code, fed from the checkpoint config the JSON carries, so only the network changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.export import EXPORT_FILE, EXPORT_FORMAT, sha256
from denoise.hashing import text_hash

__all__ = ["OnnxNetwork", "load_exported", "is_export_dir", "onnx_providers", "export_label"]


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by `denoise.export.export_model`."""
    return (Path(path) / EXPORT_FILE).is_file()


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``device``: auto = CUDA where this onnxruntime has it, else
    CPU; cpu; cuda (ValueError if unavailable). mps runs on the CPU provider."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running an exported model needs onnxruntime: pip install 'denoise[export]'") from None

    available = ort.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError("device 'cuda' requested but this onnxruntime has no CUDA provider "
                             "(pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device not in ("auto", "cpu", "mps"):
        raise ValueError(f"device must be auto, cpu, cuda or mps, got {device!r}")
    return ["CPUExecutionProvider"]


class OnnxNetwork(torch.nn.Module):
    """An ONNX network behind the ``predict`` method the torch models have: (n, c, *spatial) float32
    in, (n, 1, *spatial) out, on the input's device. No parameters; ``.to()`` and ``.eval()`` are
    no-ops for it."""

    def __init__(self, path: str | Path, *, device: str = "auto", threads: int | None = None) -> None:
        super().__init__()
        providers = onnx_providers(device)  # (says what to install when onnxruntime is missing)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)

    forward = predict


def load_exported(folder: str | Path, *, device: str = "auto", **kwargs: Any):
    """An exported model folder as a `LearnedDenoiser` running on onnxruntime.

    ``kwargs`` are `LearnedDenoiser`'s inference options (sigma, tta, planes, tile, overlap,
    batch_size). Raises ValueError for a folder that is not an ONNX export, a file whose hash
    does not match the JSON (changed or corrupt), or a TorchScript export (not loaded: it carries
    code)."""
    from denoise.models.learned import LearnedDenoiser, isotropic_setup

    folder = Path(folder)
    spec_path = folder / EXPORT_FILE
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder}: not an exported model ({EXPORT_FILE} unreadable: {exc})") from None
    if spec.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{spec_path}: unknown export format {spec.get('format')!r} (this version reads {EXPORT_FORMAT})")
    if spec["network"]["format"] != "onnx":
        raise ValueError(f"{folder}: a {spec['network']['format']} export; the toolkit runs ONNX exports only "
                         "(TorchScript archives carry code; load them with libtorch / torch.jit.load if you trust them)")
    torch_device = "cpu"  # onnxruntime moves data itself; the torch side only stages arrays
    nets = {}
    for key in ("network", "isotropic"):
        entry = spec.get(key)
        if entry is None:
            continue
        name = str(entry.get("file", ""))
        if not name or Path(name).name != name or name in (".", ".."):  # a bare file name inside the folder
            raise ValueError(f"{spec_path}: network file {name!r} must be a file name inside the folder")
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{folder}: {entry['file']} is missing")
        digest = sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(f"{path}: its SHA-256 does not match {EXPORT_FILE} (the file was changed or is corrupt)")
        nets[key] = (OnnxNetwork(path, device=device), digest)
    name = export_label(spec, folder)
    digest = nets["network"][1][:12]
    isotropic = None
    if "isotropic" in nets and kwargs.get("planes") != 1:
        iso_info, shared = isotropic_setup(spec["checkpoint"], spec["isotropic"]["checkpoint"], kwargs)
        isotropic = LearnedDenoiser(nets["isotropic"][0], iso_info, name=iso_info.get("name") or "isotropic",
                                    device=torch_device, checkpoint_hash=nets["isotropic"][1][:12], **shared)
        digest = text_hash(f"{digest}+{isotropic.checkpoint_hash}")
    model = LearnedDenoiser(nets["network"][0], spec["checkpoint"], name=name, device=torch_device,
                            checkpoint_hash=digest, isotropic=isotropic, **kwargs)
    return model


def export_label(spec: dict[str, Any], folder: Path) -> str:
    """The name an exported model's manifest rows carry: ``NAME.onnx`` (the runtimes told apart;
    no ``+``, which manifests keep for inference options)."""
    return f"{spec.get('name') or folder.name}.onnx"
