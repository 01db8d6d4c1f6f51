"""denoise viewer: noisy vs denoised vs clean with PSNR/SSIM (research use only).

Launch with ``denoise view [--data-root DIR]`` or ``streamlit run apps/viewer.py -- --data-root DIR``.
UI only: the logic lives in the streamlit-free, unit-tested ``denoise.viewer.support`` (paths,
uploads, planes, metric tables), ``.compare`` (difference maps, colour bars, metric ranking) and
``.advice`` (warnings, sidebar state rules). Widgets carry explicit keys; values the page must keep
while a widget is not shown live in ``st.session_state`` under ``_``-prefixed keys.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from denoise import add_noise, denoise_scan, load_model
from denoise.models import ClassicalDenoiser, bm3d_available
from denoise.noise import parse_noise
from denoise.pretrained import list_pretrained
from denoise.viewer.advice import (
    carry_methods,
    checkpoint_label,
    level_help,
    model_warnings,
    root_choice,
    scan_warnings,
    training_noise,
)
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
from denoise.viewer.controls import screen, view_controls
from denoise.viewer.downloads import download_section, metrics_csv
from denoise.viewer.insight import insight_tabs
from denoise.viewer.insight import model as _model
from denoise.viewer.support import (
    PSNR_VOLUME,
    SAMPLE_DIR,
    links_outside,
    list_scans_under,
    metrics_rows,
    noise_column,
    plane_slice,
    progress_reporter,
    read_scan_under_root,
    scan_from_upload,
    timed,
    to_display,
)
from denoise.viewer.uncertainty_view import uncertainty_row

CLASSICAL = ["nlm", "tv", "gaussian"] + (["bm3d"] if bm3d_available() else [])
DEFAULT_SAMPLE = "mr_t1_brain_slab.nii.gz"
BEST = "background-color: #c6efce"


def _data_root() -> Path | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-root", default=os.environ.get("DENOISE_DATA_ROOT"))
    args, _ = p.parse_known_args(sys.argv[1:])
    return Path(args.data_root).resolve() if args.data_root else None


@st.cache_data(max_entries=8)
def _read(root: str, relative: str):
    """A scan under ``root``; every file it opens is checked to resolve inside ``root``."""
    return read_scan_under_root(root, relative)


@st.cache_data(max_entries=4)
def _upload(name: str, data: bytes):
    return scan_from_upload(name, data)


@st.cache_data(max_entries=32, show_spinner=False)
def _noisy(_scan, key: str, spec: str, seed: int):
    return add_noise(_scan, spec, seed=seed)


@st.cache_resource(show_spinner=False)
def _results() -> OrderedDict:
    """Denoised results per (scan and noise key, method), the 64 most recently used. Not
    `st.cache_data`: that replays the elements a cached call drew, and the progress bar lives
    outside the call; results are shared read-only (the strength blend makes new arrays)."""
    return OrderedDict()


def _denoise(scan, key: str, method: str, report=None) -> tuple[np.ndarray, float]:
    store = _results()
    if (key, method) in store:
        store.move_to_end((key, method))
        return store[(key, method)]
    den = _model(method.split(":", 1)[1]) if ":" in method else ClassicalDenoiser(method)
    result, secs = timed(denoise_scan, scan, den, progress=report or False)
    store[(key, method)] = (result.array, secs)
    while len(store) > 64:
        store.popitem(last=False)
    return store[(key, method)]


@st.cache_resource(max_entries=4, show_spinner=False)
def _checkpoint(digest: str, _data: bytes):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
        fh.write(_data)
        fh.flush()
        return load_model(fh.name, device="cpu")


@st.cache_data(max_entries=16, show_spinner=False)
def _denoise_checkpoint(_scan, key: str, digest: str, _model_obj):
    result, secs = timed(denoise_scan, _scan, _model_obj)
    return result.array, secs


@st.cache_data(max_entries=16, show_spinner=False)
def _real_level(_scan, key: str) -> float:
    """A real MR scan's noise sigma as a fraction of its reference intensity (the unit of MR noise specs)."""
    from denoise.metrics import estimate_sigma
    from denoise.normalize import reference_intensity

    a = _scan.array[0] if _scan.array.ndim == 4 else _scan.array
    return estimate_sigma(a) / reference_intensity(a)


@st.cache_data(max_entries=16, show_spinner=False)
def _scan_warnings(_scan, key: str) -> list[str]:
    return scan_warnings(_scan.modality, _scan.array)  # a percentile over the volume: once per scan


@st.cache_data(max_entries=64, show_spinner=False)
def _colorbar(limit: float, units: str, title: str) -> bytes:
    return colorbar_png(limit, units, title)


def main() -> None:
    st.set_page_config(page_title="denoise viewer", layout="wide")
    st.title("denoise viewer")
    st.caption("Research use only — not for diagnosis.")
    shipped = [m["name"] for m in list_pretrained()]
    root = _data_root()

    with st.sidebar:  # always drawn in full, so that no widget loses its state when the scan fails
        st.header("Scan")
        scan, scan_key, problem = _scan_section(root)
        if scan is not None:
            st.session_state["_modality"] = scan.modality
        modality = scan.modality if scan is not None else st.session_state.get("_modality", "MR")
        ct = modality == "CT"
        mode, spec, seed = _noise_section(ct)
        methods, ckpt, strength = _methods_section(shipped, ct)
        show_uncertainty = st.checkbox("uncertainty maps", key="uncertainty",
                                       help="learned methods: the spread of the outputs over the 4 in-plane flips "
                                            "(as denoise run --uncertainty); 4x their compute")
    if scan is None:
        st.info(f"No scan to show: {problem}" if problem else "Choose a scan in the sidebar.")
        st.stop()

    learned = {m: _model(m.split(":", 1)[1]) for m in methods if ":" in m}
    upload = None
    if ckpt is not None:
        data = ckpt.getvalue()
        digest = hashlib.sha256(data).hexdigest()[:16]
        try:
            upload = (checkpoint_label(ckpt.name), digest, _checkpoint(digest, data))
            learned[upload[0]] = upload[2]
        except Exception as exc:  # a .pt that is not a denoise checkpoint
            st.error(f"{ckpt.name}: not a usable checkpoint ({exc})")
    warns = _scan_warnings(scan, scan_key)
    real_level = _real_level(scan, scan_key) if mode == "real" and scan.modality == "MR" and learned else None
    for label, den in learned.items():
        warns += model_warnings(label, den.trained_modality, training_noise(den.info), scan.modality,
                                spec=spec if mode == "simulate" else None, real_level=real_level)
    for w in warns:
        st.warning(w)

    clean = scan if mode == "simulate" else None
    if mode == "simulate":
        with st.spinner("adding noise..."):
            noisy = _noisy(scan, scan_key, spec, int(seed))
    else:
        noisy = scan
    noisy_key = f"{scan_key}|{spec}|{seed}"
    results: dict[str, tuple[np.ndarray, float]] = {}
    for method in methods:  # a bar with an ETA while a method runs (BM3D takes minutes per volume)
        slot = st.empty()
        results[method] = _denoise(noisy, noisy_key, method, progress_reporter(slot.progress, f"denoising with {method}"))
        slot.empty()
    if upload is not None:
        with st.spinner(f"denoising with {upload[0]}..."):
            results[upload[0]] = _denoise_checkpoint(noisy, noisy_key, upload[1], upload[2])
    if strength < 1.0:  # the blend of `denoise_array(strength=...)`, on the cached full-strength results
        results = {m: (noisy.array + np.float32(strength) * (arr - noisy.array), secs) for m, (arr, secs) in results.items()}

    view = view_controls(scan, scan_key)
    plane, index, center, width = view["plane"], view["index"], view["center"], view["width"]
    _image_grid(noisy, results, clean, view)
    if show_uncertainty:
        uncertainty_row(noisy, noisy_key, learned, list(results), view, strength)

    if results:
        st.subheader("Before / after")
        which = st.selectbox("method", list(results), key="compare_method")
        split = st.slider("split", 0, 100, 50, key="split")
        before, after = plane_slice(noisy.array, plane, index), plane_slice(results[which][0], plane, index)
        cut = int(before.shape[1] * split / 100)
        combo = np.concatenate([before[:, :cut], after[:, cut:]], axis=1)
        st.image(screen(to_display(combo, center, width), view), caption=f"noisy | {which}", width=420)

    _metrics(clean, noisy, results, plane, index)
    insight_tabs(shipped, noisy, plane, index, ct)

    if results:
        download_section(noisy, results, f"{noisy_key}|strength={strength}|upload={upload[1] if upload else ''}",
                         simulated=clean is not None)


def _scan_section(root: Path | None):
    """(scan, cache key, problem): the scan the sidebar names, or None and why not."""
    sources = (["sample"] if SAMPLE_DIR else []) + (["data root"] if root else []) + ["upload"]
    source = st.radio("source", sources, horizontal=True, key="source")
    if not SAMPLE_DIR and not root:
        st.info("No sample scans in this installation. Start the viewer on a folder of your scans with "
                "`denoise view --data-root DIR`, or upload a scan here.")
    try:
        if source == "sample":
            options = list_scans_under(SAMPLE_DIR)
            if st.session_state.get("sample_pick") not in options:
                st.session_state["sample_pick"] = DEFAULT_SAMPLE if DEFAULT_SAMPLE in options else options[0]
            pick = st.selectbox("sample scan", options, key="sample_pick")
            return _read(str(SAMPLE_DIR), pick), f"sample:{pick}", ""
        if source == "data root":
            return _root_scan(root)
        up = st.file_uploader("NIfTI (.nii/.nii.gz) or a zip of one DICOM series", type=["nii", "gz", "zip"], key="scan_upload")
        if up is None:
            return None, "", "upload a scan"
        data = up.getvalue()
        return _upload(up.name, data), f"upload:{up.name}:{len(data)}", ""
    except ValueError as exc:
        st.error(str(exc))
        return None, "", str(exc)


def _root_scan(root: Path):
    """The data-root scan: the dropdown's, or a typed path, which then empties the dropdown (or selects
    its entry there); `read_scan_under_root` keeps every read inside the root."""
    options = list_scans_under(root)
    outside = links_outside(root)
    if outside:
        st.warning(f"{len(outside)} file(s) under the data root link outside it and are not offered (e.g. {outside[0]})")
    rel, via = root_choice(st.session_state.get("_root_pick"), st.session_state.get("root_typed", ""), options)
    if via == "list" and st.session_state.get("root_typed"):  # a typed path the list has: shown there instead
        st.session_state["root_pick"] = rel
        st.session_state["root_typed"] = ""
    if via == "typed":
        st.selectbox("scan under data root", options, index=None, disabled=True, key="root_pick_off",
                     placeholder="(the typed path below is read)")
    elif options:
        if st.session_state.get("root_pick") not in options:
            st.session_state["root_pick"] = rel
        rel = st.selectbox("scan under data root", options, key="root_pick")
        st.session_state["_root_pick"] = rel
    st.text_input("or a path relative to the data root", key="root_typed",
                  help="read instead of the dropdown's scan while not empty; clear it to use the dropdown")
    if not rel:
        return None, "", "no scans under the data root"
    return _read(str(root), rel), f"root:{rel}", ""


def _noise_section(ct: bool) -> tuple[str, str, int]:
    st.header("Noise")
    mode = st.radio("mode", ["simulate", "real"], horizontal=True, key="mode",
                    help="simulate: the scan is clean, noise is added; real: the scan is already noisy")
    if mode != "simulate":
        return mode, "none", 0
    kinds = ["lowdose", "gaussian", "poisson"] if ct else ["rician", "gaussian", "speckle", "poisson"]
    kind = st.selectbox("noise kind", kinds, key="noise_kind")
    trained = {m: training_noise(_model(m.split(":", 1)[1]).info)
               for m in st.session_state.get("_methods") or [] if ":" in m}
    level = st.slider("level", 0.01, 1.0 if kind == "lowdose" else 0.2, 0.25 if kind == "lowdose" else 0.05, 0.01,
                      key="level", help=level_help(kind, trained))
    seed = st.number_input("seed", 0, 10_000, 0, key="seed")
    spec = f"{kind}:{level:g}"
    parse_noise(spec)
    return mode, spec, int(seed)


def _methods_section(shipped: list[str], ct: bool):
    st.header("Methods")
    lesson = ("vae", "sparse", "cae")  # the other autoencoders (MR only)
    models = [f"dae:{m}" for m in shipped if (m.startswith("ct") == ct) and not m.startswith(lesson)]
    models += [f"{m.split('-')[0]}:{m}" for m in shipped if m.startswith(lesson) and not ct]
    options = models + CLASSICAL
    default = [o for o in options if o.startswith("dae:") and o.endswith("-2d")][:1] + ["nlm"]
    if st.session_state.get("_method_options") != options:  # first run, or the modality changed
        st.session_state["methods"] = carry_methods(st.session_state.get("_methods"), options, default)
        st.session_state["_method_options"] = options
    methods = st.multiselect("methods", options, key="methods")
    st.session_state["_methods"] = methods
    ckpt = st.file_uploader("or a checkpoint (.pt)", type=["pt"], key="ckpt")
    strength = st.slider("strength", 0.0, 1.0, 1.0, 0.05, key="strength",
                         help="blend each result with the input: 0 = the input, 1 = full denoising "
                              "(as denoise run --strength); lower keeps more texture and faint structure")
    return methods, ckpt, strength


def _image_grid(noisy, results, clean, view: dict) -> None:
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


def _metrics(clean, noisy, results, plane: str, index: int) -> None:
    import altair as alt

    st.subheader("Metrics")
    rows = metrics_rows(clean, noisy, results, plane=plane, index=index)
    table = pd.DataFrame(rows).set_index("method")
    best = {c: best_methods(rows, c) for c in table.columns}
    styled = table.style.apply(lambda col: [BEST if m in best[col.name] else "" for m in col.index], axis=0)
    st.table(styled.format(precision=3))
    st.download_button("metrics table (CSV)", metrics_csv(table), file_name="metrics.csv", mime="text/csv",
                       key="download_metrics")
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


if __name__ == "__main__":  # `streamlit run` executes this file as __main__
    main()
