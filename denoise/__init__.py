"""denoise: convolutional denoising autoencoders for CT and MR scans (research use only).

The public API for research scripts. Heavy modules (torch models) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from denoise._version import __version__

__all__ = [
    "Scan",
    "read_scan",
    "write_scan",
    "find_scans",
    "add_noise",
    "load_model",
    "denoise_scan",
    "denoise_folder",
    "adapt",
    "anomaly_map",
    "anomaly_folder",
    "psnr",
    "ssim",
    "__version__",
]

_LAZY = {
    "Scan": "denoise.scan",
    "read_scan": "denoise.io",
    "write_scan": "denoise.io",
    "find_scans": "denoise.io",
    "add_noise": "denoise.noise",
    "load_model": "denoise.infer",
    "denoise_scan": "denoise.infer",
    "denoise_folder": "denoise.batch",
    "adapt": "denoise.adapt",
    "anomaly_map": "denoise.anomaly",
    "anomaly_folder": "denoise.anomaly_job",
    "psnr": "denoise.metrics",
    "ssim": "denoise.metrics",
}

if TYPE_CHECKING:  # pragma: no cover
    from denoise.adapt import adapt
    from denoise.anomaly import anomaly_map
    from denoise.anomaly_job import anomaly_folder
    from denoise.batch import denoise_folder
    from denoise.infer import denoise_scan, load_model
    from denoise.io import find_scans, read_scan, write_scan
    from denoise.metrics import psnr, ssim
    from denoise.noise import add_noise
    from denoise.scan import Scan


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'denoise' has no attribute {name!r}")
