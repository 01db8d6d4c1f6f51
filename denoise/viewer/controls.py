"""The viewer's view controls (plane, slice, window, zoom, pan) and how a slice is drawn with
them: square millimetres, zoomed and panned (`denoise.viewer.geometry`)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from denoise.viewer.compare import zoom_center
from denoise.viewer.geometry import orientation, plane_aspect, slice_position, square_pixels
from denoise.viewer.scroll import scroll_steps
from denoise.viewer.support import n_slices, window_presets

__all__ = ["view_controls", "screen"]


def view_controls(scan, scan_key: str):
    """Plane, slice, window and zoom; the plane box and slice slider are reset together when the
    scan changes, so that they always name what is shown."""
    col1, col2, col3 = st.columns(3)
    planes = ["axial", "coronal", "sagittal"] if scan.array.ndim >= 3 else ["axial"]
    if st.session_state.get("plane") not in planes:
        st.session_state["plane"] = "axial"
    plane = col1.selectbox("plane", planes, key="plane")
    n = n_slices(scan.array, plane)
    if st.session_state.get("_view") != (scan_key, plane) or not 0 <= st.session_state.get("slice", -1) < n:
        st.session_state["slice"] = n // 2
    st.session_state["_view"] = (scan_key, plane)
    steps = scroll_steps() if n > 1 else 0
    if steps:
        st.session_state["slice"] = int(min(max(st.session_state["slice"] + steps, 0), n - 1))
    index = col2.slider("slice", 0, n - 1, key="slice") if n > 1 else 0
    presets = _presets(scan, scan_key)
    options = list(presets) + ["manual"]
    if st.session_state.get("window") not in options:
        st.session_state["window"] = options[0]
    preset = col3.selectbox("window", options, key="window")
    if preset == "manual":
        if st.session_state.get("_window_was") != "manual":  # start from the window on screen until now
            last = st.session_state.get("_last_window", presets[options[0]])
            st.session_state["win_center"], st.session_state["win_width"] = float(last[0]), float(last[1])
        c, w = st.columns(2)
        center = c.number_input("center", key="win_center")
        width = w.number_input("width", min_value=1e-6, key="win_width")
    else:
        center, width = presets[preset]
        st.session_state["_last_window"] = (float(center), float(width))
    st.session_state["_window_was"] = preset
    zoom = st.slider("zoom", 1.0, 4.0, 1.0, 0.5, key="zoom")
    pan = (0.5, 0.5)
    if zoom > 1:  # pan: where the zoomed window sits, in % of the height and width
        p1, p2 = st.columns(2)
        pan = (p1.slider("pan up-down (%)", 0, 100, 50, key="pan_y") / 100, p2.slider("pan left-right (%)", 0, 100, 50, key="pan_x") / 100)
    where = f"{plane} {index + 1}/{n}"
    if scan.array.ndim >= 3:
        where += f" · {slice_position(scan.affine, plane, index)} · {orientation(scan.affine, plane)}"
    return {"plane": plane, "index": index, "n": n, "center": center, "width": width, "zoom": zoom, "pan": pan,
            "aspect": plane_aspect(scan.spacing, plane) if scan.array.ndim >= 3 else 1.0, "where": where}


@st.cache_data(max_entries=16, show_spinner=False)
def _presets(_scan, key: str) -> dict[str, tuple[float, float]]:
    return window_presets(_scan.modality, _scan.array)


def screen(img: np.ndarray, view: dict) -> np.ndarray:
    """What is drawn of a displayed slice (grey uint8 or colour): square millimetres
    (`square_pixels` by the plane's aspect), then the zoomed, panned window."""
    return zoom_center(square_pixels(img, view["aspect"]), view["zoom"], view["pan"])
