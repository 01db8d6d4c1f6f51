"""The comparison panels of the viewer page: the image grid (noisy, each method, clean) with its
residual and error rows, and the metrics table with its ranking chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from denoise.viewer.compare import (
    best_methods,
    chart_points,
    colorbar_png,
    difference_slices,
    diverging_rgb,
    metric_direction,
    scan_units,
    symmetric_limit,
)
from denoise.viewer.controls import screen
from denoise.viewer.downloads import metrics_csv
from denoise.viewer.support import PSNR_VOLUME, metrics_rows, noise_column, plane_slice, to_display

__all__ = ["image_grid", "metrics_panel"]

BEST = "background-color: #c6efce"


@st.cache_data(max_entries=64, show_spinner=False)
def _colorbar(limit: float, units: str, title: str) -> bytes:
    return colorbar_png(limit, units, title)



def image_grid(noisy, results, clean, view: dict) -> None:
    """One column per image (noisy, each method, clean); under each method its residual (noisy -
    denoised) and, with a clean scan, its error (denoised - clean), in a diverging map centred at 0
    on one scale per row, with the colour bar in the last column."""
    units = scan_units(noisy.modality)
    plane, index, center, width = view["plane"], view["index"], view["center"], view["width"]
    grey = {"noisy": plane_slice(noisy.array, plane, index)}
    grey.update({m: plane_slice(r[0], plane, index) for m, r in results.items()})
    c2 = plane_slice(clean.array, plane, index) if clean is not None else None
    residuals, errors = difference_slices(grey["noisy"], {m: grey[m] for m in results}, c2)
    ncol = len(results) + 2
    cols = st.columns(ncol)
    for i, (name, img) in enumerate(list(grey.items()) + ([("clean", c2)] if c2 is not None else [])):
        cols[i].image(screen(to_display(img, center, width), view), caption=f"{name} · {view['where']}", width="stretch")
    for title, maps, what in (("residual", residuals, "noisy − denoised: what each method removed; "
                               "structure here is detail it took away"),
                              ("error", errors, "denoised − clean: what is left wrong; "
                               "'noisy' is the noise itself")):
        if not maps:
            continue
        st.markdown(f"**{title.capitalize()}** ({what}; red > 0 > blue, in {units})")
        limit = symmetric_limit(list(maps.values()))
        cols = st.columns(ncol)
        for name, diff in maps.items():
            col = 0 if name == "noisy" else 1 + list(results).index(name)
            rms = float(np.sqrt(np.mean(np.square(diff, dtype=np.float64))))
            cols[col].image(screen(diverging_rgb(diff, limit), view), width="stretch",
                            caption=f"{title} {name} (rms {rms:.3g} {units})")
        cols[-1].image(_colorbar(limit, units, title), width="stretch", caption=f"{title} colour bar, ±{limit:g} {units}")


def metrics_panel(clean, noisy, results, plane: str, index: int) -> None:
    import altair as alt

    st.subheader("Metrics")
    rows = metrics_rows(clean, noisy, results, plane=plane, index=index)
    table = pd.DataFrame(rows).set_index("method")
    best = {c: best_methods(rows, c) for c in table.columns}
    styled = table.style.apply(lambda col: [BEST if m in best[col.name] else "" for m in col.index], axis=0)
    st.table(styled.format(precision=3))
    st.download_button("metrics table (CSV)", metrics_csv(table), file_name="metrics.csv", mime="text/csv",
                       key="download_metrics", on_click="ignore")
    column = PSNR_VOLUME if clean is not None else noise_column(noisy.modality)
    points, domain = chart_points(rows, column)
    if len(points) > 1:
        df = pd.DataFrame(points, columns=["method", "value"])
        df["rank"] = np.where(df["method"].isin(best[column]), "best", "other")
        order = [m for m, _ in points]
        x = alt.X("value:Q", title=f"{column}: {metric_direction(column)} is better", scale=alt.Scale(domain=list(domain), zero=False))
        y = alt.Y("method:N", sort=order, title=None)
        dots = alt.Chart(df).mark_point(filled=True, size=120).encode(
            x=x, y=y, color=alt.Color("rank:N", scale=alt.Scale(domain=["best", "other"], range=["#2e7d32", "#607d8b"]),
                                      legend=None), tooltip=["method", "value"])
        labels = alt.Chart(df).mark_text(align="left", dx=8).encode(x=x, y=y, text=alt.Text("value:Q", format=".2f"))
        st.altair_chart((dots + labels).properties(height=40 + 30 * len(points)), width="stretch")
    if clean is not None:
        st.caption("Green: best per column (PSNR, SSIM: higher is better). PSNR in dB; data range = clean 99.5th "
                   "foreground percentile (MR) or 2000 HU (CT); fg = foreground mask of the clean scan (threshold, "
                   "closing, hole fill, dilation). Seconds: this machine's CPU.")
    else:
        st.caption("No clean image: the noise sigma is a wavelet estimate on the shown slice, "
                   + ("in HU" if noisy.modality == "CT" else "in % of the input's reference intensity (99.5th "
                      "percentile of its foreground; rician:0.05 = 5%)")
                   + ". Lower is better (green), but smoothing lowers it too: check the residual maps for structure.")
