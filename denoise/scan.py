"""The `Scan`: one image volume in physical units plus what is needed to write it back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Scan"]


@dataclass(frozen=True)
class Scan:
    """One medical image, the unit that flows through the whole package.

    Attributes:
        array: float32 voxel values in physical units (HU for CT, scanner units for MR).
            Shape ``(y, x)`` for a single slice, ``(z, y, x)`` for a volume, or ``(t, z, y, x)``
            for a time series / multi-volume acquisition.
        spacing: voxel size in mm along the spatial axes, in array order (``(y, x)`` or ``(z, y, x)``).
        affine: 4x4 matrix mapping voxel indices ``(i, j, k) = (x, y, z)`` (that is: the array's
            last, second-to-last and third-to-last axes) to world millimetres in RAS+ (nibabel's
            convention). DICOM's LPS patient coordinates are converted on read.
        modality: ``"CT"``, ``"MR"`` or ``"OT"`` (other / unknown).
        meta: what the writers need to write the scan back (``"format"``: ``"dicom"`` or
            ``"nifti"``; the source DICOM datasets without pixel data or the NIfTI header), plus
            ``"source"`` (the path it was read from). Compute code never reads it.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    modality: str = "OT"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim not in (2, 3, 4):
            raise ValueError(f"Scan array must be 2D, 3D or 4D, got shape {arr.shape}")
        if arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        object.__setattr__(self, "array", arr)
        spatial = min(arr.ndim, 3)
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != spatial:
            raise ValueError(f"spacing {spacing} must have {spatial} entries for shape {arr.shape}")
        object.__setattr__(self, "spacing", spacing)
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def is_timeseries(self) -> bool:
        """True for a ``(t, z, y, x)`` scan."""
        return self.array.ndim == 4

    def slab(self, start: int, count: int) -> Scan:
        """Slices ``start`` .. ``start + count - 1`` along the first axis of a ``(z, y, x)`` volume (a
        copy), its affine moved to the first of them so that world positions stay right; ``meta`` is
        left empty (the source's per-file headers describe other slices)."""
        if self.array.ndim != 3:
            raise ValueError(f"slab is for (z, y, x) volumes, got shape {self.array.shape}")
        affine = self.affine.copy()
        affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, float(start)]) + affine[:3, 3]
        return Scan(self.array[start : start + count].copy(), self.spacing, affine, self.modality, {})

    def with_array(self, array: np.ndarray, **meta_updates: Any) -> Scan:
        """A copy holding ``array`` (same shape) and the same geometry; ``meta`` entries updated."""
        array = np.asarray(array, dtype=np.float32)
        if array.shape != self.array.shape:
            raise ValueError(f"new array shape {array.shape} differs from {self.array.shape}")
        return dataclasses.replace(self, array=array, meta={**self.meta, **meta_updates})

    def describe(self) -> dict[str, Any]:
        """A patient-free summary: kind, shape, spacing, modality (for `denoise info`, manifests)."""
        return {
            "format": self.meta.get("format", "memory"),
            "kind": {2: "slice", 3: "volume", 4: "timeseries"}[self.array.ndim],
            "modality": self.modality,
            "shape": "x".join(str(s) for s in self.array.shape),
            "spacing": "x".join(f"{s:g}" for s in self.spacing),
            "series": self.meta.get("series_label", ""),
            "transfer_syntax": self.meta.get("transfer_syntax", ""),
        }
