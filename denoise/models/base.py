"""The one interface every denoiser implements: learned models and classical filters alike."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from denoise.normalize import Normalization

__all__ = ["Denoiser"]


class Denoiser(ABC):
    """Denoises batches of images on the model's normalised intensity scale.

    `denoise.infer.denoise_scan` does the rest (physical units <-> normalised scale, slicing,
    time points), so every method is run and measured the same way.

    Attributes:
        name: a short label (``"nlm"``, ``"dae:mr-2d"``).
        spatial_dims: 2 (works slice by slice) or 3 (whole volumes).
        normalization: the scaling this denoiser expects; None means the modality default.
        context: 2D only: neighbouring slices on each side the denoiser wants as extra channels;
            with context > 0, `denoise_batch` receives ``(n, 1 + 2 context, y, x)`` stacks.
    """

    name: str = "denoiser"
    spatial_dims: int = 2
    context: int = 0
    normalization: Normalization | None = None
    progress: bool = False  # 3D denoisers: show a bar over their own steps (`denoise_array` sets it)

    @abstractmethod
    def denoise_batch(self, batch: np.ndarray) -> np.ndarray:
        """Denoise ``batch`` of shape ``(n, y, x)`` (2D) or ``(n, z, y, x)`` (3D), float32,
        normalised scale; return the same shape. Never modifies the input."""

    @property
    def accepts_2d(self) -> bool:
        """Whether a lone 2D image (no slice axis) can be denoised: 2D denoisers, and learned
        slice-preserving 3D models (`LearnedDenoiser`), which take it as a one-slice volume."""
        return self.spatial_dims == 2

    def plan(self, shape: tuple[int, ...], spacing: tuple[float, ...] | None) -> tuple[Denoiser, tuple[int, ...]]:
        """(the denoiser to run, the axes to slice a (z, y, x) volume along): by default this one
        along the first axis. Learned models choose others (`LearnedDenoiser.plan`)."""
        return self, (0,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, spatial_dims={self.spatial_dims})"
