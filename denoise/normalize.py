"""Modality-aware intensity scaling; the chosen scaling is saved inside every checkpoint.

CT: a fixed HU window, ``(HU - low) / (high - low)`` with default [-1000, 1000] HU, so air is 0 and
1000 HU is 1 whatever the scan. Models see window-scaled input limited to ``model_range`` (by default
[-1200, 3000] HU): out-of-field padding (-2048 or -3024 HU) and metal would otherwise be far outside
anything the model was trained on. MR: divide by a robust maximum, the 99.5th percentile of the
foreground (``reference_intensity``), computed per scan (MR units are arbitrary).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normalization", "reference_intensity", "normalization_for", "hu_warning"]


def reference_intensity(array: np.ndarray, *, percentile: float = 99.5) -> float:
    """Robust maximum of an image: the ``percentile`` of its foreground voxels.

    The foreground is every voxel above 5% of the 99.9th percentile of the whole image, which
    drops zero/air background that would otherwise pull the percentile down. This is the
    reference for MR noise levels (``rician:0.05`` = sigma of 5% of this value, the BrainWeb
    convention with a robust maximum) and for the MR PSNR data range.
    """
    a = np.asarray(array, dtype=np.float32)
    top = float(np.percentile(a, 99.9))
    fg = a[a > 0.05 * top] if top > 0 else a
    if fg.size == 0:
        fg = a
    ref = float(np.percentile(fg, percentile))
    return ref if ref > 0 else max(float(np.abs(a).max()), 1.0)


@dataclass(frozen=True)
class Normalization:
    """How a model scales intensities. ``kind`` is "window" (fixed low/high) or "percentile"."""

    kind: str = "percentile"
    low: float = -1000.0
    high: float = 1000.0
    percentile: float = 99.5

    def __post_init__(self) -> None:
        if self.kind not in ("window", "percentile"):
            raise ValueError(f"Normalization kind must be 'window' or 'percentile', got {self.kind!r}")
        if self.kind == "window" and not self.high > self.low:
            raise ValueError("window normalization needs high > low")

    def params(self, array: np.ndarray) -> tuple[float, float]:
        """(offset, scale) such that ``(array - offset) / scale`` is the model's input scale."""
        if self.kind == "window":
            return self.low, self.high - self.low
        return 0.0, reference_intensity(array, percentile=self.percentile)

    def model_range(self) -> tuple[float, float] | None:
        """Bounds (on the model's scale) of what a model is shown, or None for no limit.

        Window scaling: 0.1 window widths below ``low`` to one width above ``high`` ([-1200, 3000]
        HU for the default window), room for noise in air and for dense bone. Inference returns
        values outside the range exactly as they were (`denoise.infer.denoise_array`)."""
        if self.kind == "window":
            return -0.1, 2.0
        return None

    def to_model(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """``(x, x_full, offset, scale)``: ``x_full = (array - offset) / scale`` and ``x`` the same
        limited to `model_range` (what a model is shown; ``x is x_full`` when unbounded)."""
        offset, scale = self.params(array)
        x_full = (np.asarray(array, dtype=np.float32) - offset) / scale
        bounds = self.model_range()
        return (x_full if bounds is None else np.clip(x_full, *bounds)), x_full, offset, scale


def normalization_for(modality: str) -> Normalization:
    """The default scaling for a modality: CT window [-1000, 1000] HU, otherwise percentile."""
    return Normalization(kind="window") if modality.upper() == "CT" else Normalization()


def hu_warning(array: np.ndarray) -> str | None:
    """Why a CT array may not be in Hounsfield units, or None when it looks like HU.

    Every CT in HU holds air (-1000 HU), fat (about -100 HU) or out-of-field padding below -500 HU
    somewhere (its noise alone reaches below 0 HU in soft tissue); an array whose darkest 0.1% lies
    above -500 has most likely not been rescaled (raw stored values, an offset such as +1024) or was
    clipped. The CT models' HU window then does not fit the data."""
    low = float(np.percentile(np.asarray(array, dtype=np.float32), 0.1))
    if low <= -500.0:
        return None
    return (f"values may not be Hounsfield units: the darkest 0.1% lie at {low:.0f} (air is -1000 HU, fat about "
            f"-100 HU); check the rescale slope/intercept, or whether the volume was clipped")
