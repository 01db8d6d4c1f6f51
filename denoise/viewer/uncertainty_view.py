"""The viewer's uncertainty row: under each learned method's residual, its flip-spread map
(`denoise.uncertainty.flip_spread`, what `denoise run --uncertainty` writes), on one scale with a
colour bar in the scan's units. Computed once per (scan, noise, method), then cached."""

from __future__ import annotations

import numpy as np
import streamlit as st

from denoise.uncertainty import flip_spread
from denoise.viewer.compare import colorbar_png, scan_units, sequential_rgb, symmetric_limit
from denoise.viewer.controls import screen
from denoise.viewer.support import plane_slice

__all__ = ["uncertainty_row"]


@st.cache_data(max_entries=16, show_spinner=False)
def _spread(_scan, key: str, _model) -> np.ndarray:
    return flip_spread(_scan.array, _model, modality=_scan.modality, spacing=_scan.spacing)


@st.cache_data(max_entries=16, show_spinner=False)
def _bar(limit: float, units: str) -> bytes:
    return colorbar_png(limit, units, "uncertainty", "magma", signed=False)


def uncertainty_row(noisy, noisy_key: str, learned: dict, methods: list[str], view: dict, strength: float) -> None:
    """One image per learned method in ``methods`` (in the image grid's columns: noisy first, then
    the methods), the spread scaled by ``strength`` as the blended output's is."""
    shown = [m for m in methods if m in learned]
    if not shown:
        st.caption("Uncertainty maps are for learned methods; none is selected.")
        return
    maps = {}
    for m in shown:
        with st.spinner(f"uncertainty of {m} (4 flips)..."):
            maps[m] = strength * plane_slice(_spread(noisy, f"{noisy_key}|{m}", learned[m]), view["plane"], view["index"])
    units = scan_units(noisy.modality)
    st.markdown(f"**Uncertainty** (spread of each model's outputs over the 4 in-plane flips: where it is unsure; "
                f"not an error bar, which reads 5-10x higher; in {units})")
    limit = symmetric_limit(list(maps.values()))
    cols = st.columns(len(methods) + 2)
    for m, img in maps.items():
        cols[1 + methods.index(m)].image(screen(sequential_rgb(img, limit), view), width="stretch",
                                         caption=f"uncertainty {m} (mean {float(np.mean(img)):.3g} {units})")
    cols[-1].image(_bar(limit, units), width="stretch", caption=f"uncertainty colour bar, 0-{limit:g} {units}")
