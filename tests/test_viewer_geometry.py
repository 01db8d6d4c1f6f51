"""True geometry in the viewer (issue #29 item 1): square millimetres, orientation letters, slice
position, panning a zoomed view."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.viewer.compare import zoom_center
from denoise.viewer.geometry import orientation, plane_aspect, slice_position, square_pixels
from denoise.viewer.support import plane_slice


def test_a_thick_slice_volume_is_shown_in_millimetres_not_as_a_strip():
    vol = np.zeros((10, 64, 80), np.float32)  # 10 slices of 5 mm, 1 x 1 mm pixels
    spacing = (5.0, 1.0, 1.0)
    for plane, (mm_h, mm_w) in {"axial": (64, 80), "coronal": (50, 80), "sagittal": (50, 64)}.items():
        shown = square_pixels(plane_slice(vol, plane, 3), plane_aspect(spacing, plane))
        assert shown.shape[0] / shown.shape[1] == pytest.approx(mm_h / mm_w, rel=0.03)
    rgb = np.zeros((10, 64, 3), np.uint8)  # colour images (residual maps) stretch the same way
    assert square_pixels(rgb, 5.0).shape == (50, 64, 3)
    assert square_pixels(rgb, 0.5).shape == (10, 128, 3)  # columns stretched, nothing shrunk


def test_orientation_letters_follow_the_affine():
    ras = np.eye(4)  # x -> R, y -> A, z -> S
    assert orientation(ras, "axial") == "top P, left L"
    assert orientation(ras, "coronal") == "top S, left L"
    assert orientation(ras, "sagittal") == "top S, left P"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # columns run towards L, rows towards P (DICOM-like)
    assert orientation(lps, "axial") == "top A, left R"


def test_slice_position_is_in_world_millimetres():
    aff = np.diag([1.0, 1.0, 2.5, 1.0])
    aff[:3, 3] = (0.0, 0.0, -40.0)
    assert slice_position(aff, "axial", 4) == "S -30.0 mm"
    assert slice_position(aff, "sagittal", 7) == "R 7.0 mm"


def test_panning_moves_the_zoomed_window_and_stays_inside():
    img = np.arange(100 * 100).reshape(100, 100)
    centre = zoom_center(img, 2, (0.5, 0.5))
    top_left = zoom_center(img, 2, (0.0, 0.0))
    bottom_right = zoom_center(img, 2, (1.0, 1.0))
    assert centre.shape == top_left.shape == (100, 100)
    assert top_left[0, 0] == img[0, 0] and bottom_right[-1, -1] == img[-1, -1]
    assert centre[0, 0] == img[25, 25]


def test_overlay_keeps_the_image_where_the_map_is_zero_and_colours_it_where_high():
    from denoise.viewer.compare import overlay_rgb, sequential_rgb

    gray = np.array([[10, 200], [120, 120]], dtype=np.uint8)
    heat = np.array([[0.0, 0.0], [0.5, 5.0]])
    rgb = overlay_rgb(gray, heat, 1.0, alpha=0.7)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0, 0], [10, 10, 10]) and np.array_equal(rgb[0, 1], [200, 200, 200])
    colour = sequential_rgb(heat, 1.0)[1, 1].astype(float)
    expected = 0.3 * 120 + 0.7 * colour  # at or above the limit: alpha of the colour
    assert np.abs(rgb[1, 1] - expected).max() <= 1
    assert np.abs(rgb[1, 0].astype(float) - 120).sum() < np.abs(rgb[1, 1].astype(float) - 120).sum()


def test_sequential_map_and_unsigned_colour_bar():
    from denoise.viewer.compare import colorbar_png, sequential_rgb

    img = np.array([[0.0, 1.0], [2.0, 10.0]])
    rgb = sequential_rgb(img, 2.0)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].sum() < rgb[0, 1].sum() < rgb[1, 0].sum()  # brighter with the value
    assert np.array_equal(rgb[1, 0], rgb[1, 1])  # clipped at the limit
    assert colorbar_png(2.0, "HU", "uncertainty", "magma", signed=False)[:4] == b"\x89PNG"
