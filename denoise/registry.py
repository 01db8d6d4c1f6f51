"""The one registry of method names, read by every layer (light: no torch, so ``--help`` can list them).

- `MODEL_KINDS`: the autoencoder kinds (`denoise.config.ModelConfig.kind`; `denoise.models.MODELS`
  maps each to its class, which owns its training loss). A checkpoint records its kind in its
  config; nothing guesses it from a file name.
- `CLASSICAL`: the classical filters of `denoise.models.ClassicalDenoiser`.
- `SLOW`: the methods a benchmark runs only when named: BM3D about 2 s per 256x256 slice on 2
  CPU cores, BM4D (BM3D in 3D) 1-2 min per 16-slice slab.
"""

from __future__ import annotations

import importlib.util

__all__ = ["MODEL_KINDS", "CLASSICAL", "SLOW", "bm3d_available"]

MODEL_KINDS = ("dae", "vae", "sparse", "linear", "cae")
CLASSICAL = ("gaussian", "median", "nlm", "tv", "wavelet", "bm3d")
SLOW = ("bm3d", "bm4d")


def bm3d_available() -> bool:
    """True when the optional BM3D/BM4D packages (non-commercial licence) are installed."""
    return importlib.util.find_spec("bm3d") is not None and importlib.util.find_spec("bm4d") is not None
