"""True geometry in the viewer: square millimetres on screen, orientation letters, slice position.

A slice of a ``(z, y, x)`` volume on a plane (`denoise.viewer.support.plane_slice`: axial keeps
``(y, x)``; coronal ``(z, x)`` and sagittal ``(z, y)`` with z reversed, superior up) has pixels of
``row mm x column mm`` from the scan's spacing; `square_pixels` stretches the displayed image so
each pixel covers the same millimetres across and down (a 5 mm-slice volume's coronal view is no
longer a thin strip). `orientation` names, from the affine (RAS+), which anatomical direction the
image's top/bottom and left/right edges face; `slice_position` is the slice's world coordinate.
Display only: nothing here changes data that is scored or written.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plane_aspect", "square_pixels", "orientation", "slice_position", "PLANE_AXIS"]

PLANE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}  # the array axis a plane slices through
_TOWARDS = ("R", "A", "S")  # RAS+: increasing world x, y, z
_AWAY = ("L", "P", "I")


def _display_axes(plane: str) -> tuple[int, int, bool]:
    """(array axis shown as rows, as columns, whether the rows are reversed on screen)."""
    return {"axial": (1, 2, False), "coronal": (0, 2, True), "sagittal": (0, 1, True)}[plane]


def plane_aspect(spacing: tuple[float, ...], plane: str) -> float:
    """Row height over column width (mm) of a slice on ``plane``; 1 for 2D scans or unknown spacing."""
    if spacing is None or len(spacing) < 3:
        return 1.0
    rows, cols, _ = _display_axes(plane)
    sp = tuple(spacing)[-3:]
    return float(sp[rows] / sp[cols]) if sp[cols] > 0 and sp[rows] > 0 else 1.0


def square_pixels(img: np.ndarray, aspect: float, *, max_factor: float = 8.0) -> np.ndarray:
    """``img`` (grey ``(h, w)`` or colour ``(h, w, c)``) stretched by nearest-neighbour so that its
    pixels are square: rows repeated by ``aspect`` (> 1) or columns by ``1 / aspect`` (< 1),
    never shrunk, at most ``max_factor`` times."""
    if abs(aspect - 1.0) < 0.02:
        return img
    h, w = img.shape[:2]
    if aspect > 1:
        n = int(round(h * min(aspect, max_factor)))
        return img[np.minimum((np.arange(n) / n * h).astype(int), h - 1)]
    n = int(round(w * min(1.0 / aspect, max_factor)))
    return img[:, np.minimum((np.arange(n) / n * w).astype(int), w - 1)]


def _letter(affine: np.ndarray, array_axis: int) -> tuple[str, str]:
    """(letter the index decreases towards, letter it increases towards) along an array axis of a
    3D scan (array axes ``(z, y, x)`` are the affine's voxel columns ``(2, 1, 0)``)."""
    d = np.asarray(affine, dtype=float)[:3, 2 - array_axis]
    k = int(np.argmax(np.abs(d)))
    return (_AWAY[k], _TOWARDS[k]) if d[k] >= 0 else (_TOWARDS[k], _AWAY[k])


def orientation(affine: np.ndarray, plane: str) -> str:
    """Where the displayed slice's edges face, e.g. ``"top S, left R"`` (from the RAS+ affine)."""
    rows, cols, flipped = _display_axes(plane)
    r0, r1 = _letter(affine, rows)
    c0, _ = _letter(affine, cols)
    return f"top {r1 if flipped else r0}, left {c0}"


def slice_position(affine: np.ndarray, plane: str, index: int) -> str:
    """The world coordinate (mm) of slice ``index`` along its plane's normal, e.g. ``"S 12.5 mm"``
    (the RAS+ component the normal mostly follows, at the volume's first row and column)."""
    axis = PLANE_AXIS[plane]
    a = np.asarray(affine, dtype=float)
    voxel = np.zeros(3)
    voxel[2 - axis] = index
    world = a[:3, :3] @ voxel + a[:3, 3]
    k = int(np.argmax(np.abs(a[:3, 2 - axis])))
    return f"{_TOWARDS[k]} {world[k]:.1f} mm"
