"""Slice scrolling by mouse wheel and keyboard (issue #29 item 7): a small Streamlit component
(`scroll/index.html`) listens on the page for the wheel over an image and for the arrow and page
keys, and reports a running total of steps; `scroll_steps` turns it into the steps taken since the
last rerun, which `denoise.viewer.controls.view_controls` adds to the slice before drawing the slider."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

__all__ = ["scroll_steps", "new_steps"]

_component = components.declare_component("denoise_slice_scroll", path=str(Path(__file__).parent / "scroll"))


def new_steps(event: dict | None, last: tuple[str, int] | None) -> tuple[int, tuple[str, int] | None]:
    """(steps since ``last``, the new ``last``) from the component's value ``{token, total}``: the
    total counts from 0 in each frame (token), so a new token starts over."""
    if not event:
        return 0, last
    token, total = str(event.get("token", "")), int(event.get("total", 0))
    before = last[1] if last and last[0] == token else 0
    return total - before, (token, total)


def scroll_steps() -> int:
    """Slices to move since the last rerun (down / wheel towards the user = +1, page keys 10)."""
    steps, st.session_state["_scroll_last"] = new_steps(_component(key="slice_scroll", default=None),
                                                        st.session_state.get("_scroll_last"))
    return steps
