"""denoise viewer: noisy vs denoised vs clean with PSNR/SSIM (research use only).

Launch with ``denoise view [--data-root DIR]`` or ``streamlit run apps/viewer.py -- --data-root DIR``.
UI only: the logic lives in the streamlit-free, unit-tested ``denoise.viewer.support`` (paths,
uploads, planes, metric tables), ``.compare`` (difference maps, colour bars, metric ranking) and
``.advice`` (warnings, sidebar state rules). Widgets carry explicit keys; values the page must keep
while a widget is not shown live in ``st.session_state`` under ``_``-prefixed keys.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import streamlit as st

from denoise import add_noise, denoise_scan, load_model
from denoise.hashing import text_hash
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
from denoise.viewer.controls import screen, view_controls
from denoise.viewer.downloads import download_section
from denoise.viewer.insight import insight_tabs
from denoise.viewer.insight import model as _model
from denoise.viewer.panels import image_grid, metrics_panel
from denoise.viewer.support import (
    SAMPLE_DIR,
    blend_factor,
    links_outside,
    list_scans_under,
    plane_slice,
    progress_reporter,
    read_scan_under_root,
    scan_from_upload,
    timed,
    to_display,
)
from denoise.viewer.uncertainty_view import uncertainty_row

# the classical filters the viewer offers (the fast ones, and BM3D when installed)
CLASSICAL = ["nlm", "tv", "gaussian"] + (["bm3d"] if bm3d_available() else [])
DEFAULT_SAMPLE = "mr_t1_brain_slab.nii.gz"
# the simulate mode's k-space kind: noise that varies across the image (denoise.noise_mr)
MRKSPACE_OPTIONS = ",coils=8,accel=3,combine=adaptive"
MRKSPACE_HELP = ("complex noise per receive coil of an 8-coil array, SENSE acceleration R = 3 and matched-filter "
                 "combination: the noise level varies across the image with the g-factor (the level is the noise at g = 1 "
                 "before acceleration)")


def _data_root() -> Path | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-root", default=os.environ.get("DENOISE_DATA_ROOT"))
    args, _ = p.parse_known_args(sys.argv[1:])
    return Path(args.data_root).resolve() if args.data_root else None


@st.cache_resource(show_spinner=False)
def _shipped() -> list[dict]:
    """The shipped models' facts (`list_pretrained`: name, kind, modality, ...), read once."""
    return list_pretrained()


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


@st.cache_resource(show_spinner=False)
def _details() -> dict:
    """What each output's `denoise.infer.denoise_array` ``details`` said, by the keys of `_results`:
    ``noise_level`` (a learned model's channel told a "map" or a "constant") and ``repeat_strength``
    (a 4D series: the strength its repeats chose, None where not calibrated)."""
    return {}


def _denoise(scan, key: str, method: str, report=None) -> tuple[np.ndarray, float]:
    store = _results()
    if (key, method) in store:
        store.move_to_end((key, method))
        return store[(key, method)]
    den = _model(method.split(":", 1)[1]) if ":" in method else ClassicalDenoiser(method)
    result, secs = timed(denoise_scan, scan, den, progress=report or False)
    store[(key, method)] = (result.array, secs)
    _details()[(key, method)] = {k: result.meta.get(k) for k in ("noise_level", "repeat_strength")}
    while len(store) > 64:
        _details().pop(store.popitem(last=False)[0], None)
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
    return result.array, secs, result.meta.get("repeat_strength")


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


def main() -> None:
    st.set_page_config(page_title="denoise viewer", layout="wide")
    st.title("denoise viewer")
    st.caption("Research use only — not for diagnosis.")
    shipped = _shipped()
    root = _data_root()

    with st.sidebar:  # always drawn in full, so that no widget loses its state when the scan fails
        st.header("Scan")
        scan, scan_key, problem = _scan_section(root)
        if scan is not None:
            st.session_state["_modality"] = scan.modality
        modality = scan.modality if scan is not None else st.session_state.get("_modality", "MR")
        ct = modality == "CT"
        mode, spec, seed = _noise_section(ct)
        mine = {m["name"]: m["kind"] for m in shipped if m["modality"] == modality}  # this modality's models
        methods, ckpt, strength = _methods_section(mine)
        show_uncertainty = st.checkbox("uncertainty maps", key="uncertainty",
                                       help="learned methods: the spread of the outputs over the 4 in-plane flips "
                                            "(as denoise run --uncertainty); 4x their compute")
    if scan is None:
        st.info(f"No scan to show: {problem}" if problem else "Choose a scan in the sidebar.")
        st.stop()

    learned, upload = _learned(methods, ckpt)
    _warnings(scan, scan_key, learned, mode, spec)
    clean = scan if mode == "simulate" else None
    if mode == "simulate":
        with st.spinner("adding noise..."):
            noisy = _noisy(scan, scan_key, spec, int(seed))
    else:
        noisy = scan
    noisy_key = f"{scan_key}|{spec}|{seed}"
    results = _outputs(noisy, noisy_key, methods, upload, strength)

    view = view_controls(scan, scan_key)
    plane, index = view["plane"], view["index"]
    image_grid(noisy, results, clean, view)
    if show_uncertainty:
        uncertainty_row(noisy, noisy_key, learned, list(results), view, strength)
    if results:
        _before_after(noisy, results, view)
    metrics_panel(clean, noisy, results, plane, index)
    insight_tabs(mine, noisy, plane, index, ct)

    if results:
        download_section(noisy, results, f"{noisy_key}|strength={strength}|upload={upload[1] if upload else ''}",
                         simulated=clean is not None)


def _learned(methods: list[str], ckpt) -> tuple[dict, tuple | None]:
    """The chosen learned models by label, with an uploaded checkpoint's (label, digest, model)
    when one was given and loads (an error is shown for one that does not)."""
    learned = {m: _model(m.split(":", 1)[1]) for m in methods if ":" in m}
    upload = None
    if ckpt is not None:
        data = ckpt.getvalue()
        digest = text_hash(data, length=16)
        try:
            upload = (checkpoint_label(ckpt.name), digest, _checkpoint(digest, data))
            learned[upload[0]] = upload[2]
        except Exception as exc:  # a .pt that is not a denoise checkpoint
            st.error(f"{ckpt.name}: not a usable checkpoint ({exc})")
    return learned, upload


def _warnings(scan, scan_key: str, learned: dict, mode: str, spec: str) -> None:
    """The CLI's warnings about the scan and each learned model on it (modality, noise range)."""
    warns = _scan_warnings(scan, scan_key)
    real_level = _real_level(scan, scan_key) if mode == "real" and scan.modality == "MR" and learned else None
    for label, den in learned.items():
        warns += model_warnings(label, den.trained_modality, training_noise(den.info), scan.modality,
                                spec=spec if mode == "simulate" else None, real_level=real_level)
    for w in warns:
        st.warning(w)


def _outputs(noisy, noisy_key: str, methods: list[str], upload: tuple | None,
             strength: float) -> dict[str, tuple[np.ndarray, float]]:
    """Every chosen method's output and seconds (cached), blended to ``strength``."""
    results: dict[str, tuple[np.ndarray, float]] = {}
    for method in methods:  # a bar with an ETA while a method runs (BM3D takes minutes per volume)
        slot = st.empty()
        results[method] = _denoise(noisy, noisy_key, method, progress_reporter(slot.progress, f"denoising with {method}"))
        slot.empty()
    if upload is not None:
        with st.spinner(f"denoising with {upload[0]}..."):
            arr, secs, chose = _denoise_checkpoint(noisy, noisy_key, upload[1], upload[2])
        results[upload[0]] = (arr, secs)
    details = {m: _details().get((noisy_key, m)) or {} for m in methods}
    mapped = [m for m in methods if details[m].get("noise_level") == "map"]
    if mapped:
        st.caption(f"{', '.join(m.split(':', 1)[-1] for m in mapped)}: told a map of the noise level, which varies across "
                   "this image (as `denoise run --noise-level auto` does; the other outputs, one level per slice)")
    chosen = {m: d["repeat_strength"] for m, d in details.items() if d.get("repeat_strength") is not None}
    if upload is not None and chose is not None:
        chosen[upload[0]] = chose
    if chosen:
        st.caption("A 4D series: its still repeats chose how much of each method's change to keep, as `denoise run` "
                   "does (`--full-strength` keeps it all): " + ", ".join(f"{m.split(':', 1)[-1]} {s:.2f}" for m, s in chosen.items()))
    if strength < 1.0:  # the blend of `denoise_array(strength=...)`, on the cached full-strength results
        results = {m: (noisy.array + np.float32(blend_factor(strength, chosen.get(m))) * (arr - noisy.array), secs)
                   for m, (arr, secs) in results.items()}
    return results


def _before_after(noisy, results: dict, view: dict) -> None:
    """The noisy slice and a method's output side by side, split where the slider says."""
    st.subheader("Before / after")
    which = st.selectbox("method", list(results), key="compare_method")
    split = st.slider("split", 0, 100, 50, key="split")
    plane, index = view["plane"], view["index"]
    before, after = plane_slice(noisy.array, plane, index), plane_slice(results[which][0], plane, index)
    cut = int(before.shape[1] * split / 100)
    combo = np.concatenate([before[:, :cut], after[:, cut:]], axis=1)
    st.image(screen(to_display(combo, view["center"], view["width"]), view), caption=f"noisy | {which}", width=420)


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
    kinds = ["lowdose", "gaussian", "poisson"] if ct else ["rician", "gaussian", "speckle", "poisson", "mrkspace"]
    kind = st.selectbox("noise kind", kinds, key="noise_kind",
                        help=None if ct else f"mrkspace: {MRKSPACE_HELP}")
    trained = {m: training_noise(_model(m.split(":", 1)[1]).info)
               for m in st.session_state.get("_methods") or [] if ":" in m}
    level = st.slider("level", 0.01, 1.0 if kind == "lowdose" else 0.2, 0.25 if kind == "lowdose" else 0.05, 0.01,
                      key="level", help=level_help(kind, trained))
    seed = st.number_input("seed", 0, 10_000, 0, key="seed")
    spec = f"{kind}:{level:g}" + (MRKSPACE_OPTIONS if kind == "mrkspace" else "")
    parse_noise(spec)
    return mode, spec, int(seed)


def _methods_section(shipped: dict[str, str]):
    """The method picker: the scan's modality's shipped models (``shipped``: name -> kind, the
    denoising autoencoders first), the classical filters, an uploaded checkpoint and the strength."""
    st.header("Methods")
    models = [f"{kind}:{m}" for m, kind in shipped.items() if kind == "dae"]
    models += [f"{kind}:{m}" for m, kind in shipped.items() if kind != "dae"]
    options = models + CLASSICAL
    default = [o for o in options if o.startswith("dae:") and o.endswith("-2d")][:1] + ["nlm"]
    # first run, the modality changed, or the selection's state was lost (a rerun that interrupted the
    # first one: the browser test saw an empty selection after a fast click, once in a full suite)
    if st.session_state.get("_method_options") != options or "methods" not in st.session_state:
        st.session_state["methods"] = carry_methods(st.session_state.get("_methods"), options, default)
        st.session_state["_method_options"] = options
    methods = st.multiselect("methods", options, key="methods")
    st.session_state["_methods"] = methods
    ckpt = st.file_uploader("or a checkpoint (.pt)", type=["pt"], key="ckpt")
    strength = st.slider("strength", 0.0, 1.0, 1.0, 0.05, key="strength",
                         help="blend each result with the input: 0 = the input, 1 = full denoising "
                              "(as denoise run --strength); lower keeps more texture and faint structure")
    return methods, ckpt, strength


if __name__ == "__main__":  # `streamlit run` executes this file as __main__
    main()
