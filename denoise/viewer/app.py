"""denoise viewer: noisy vs denoised vs clean with PSNR/SSIM (research use only).

Launch with ``denoise view [--data-root DIR]`` or ``streamlit run apps/viewer.py -- --data-root DIR``.
Uses the public API plus the streamlit-free helpers in ``denoise.viewer.support``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from denoise import add_noise, denoise_scan, load_model
from denoise.models import ClassicalDenoiser, bm3d_available
from denoise.noise import parse_noise
from denoise.pretrained import list_pretrained
from denoise.viewer.support import (
    SAMPLE_DIR,
    links_outside,
    list_scans_under,
    metrics_rows,
    n_slices,
    plane_slice,
    read_scan_under_root,
    scan_from_upload,
    scan_to_download,
    timed,
    to_display,
    window_presets,
)

CLASSICAL = ["nlm", "tv", "gaussian"] + (["bm3d"] if bm3d_available() else [])
DEFAULT_SAMPLE = "mr_t1_brain_slab.nii.gz"


def _data_root() -> Path | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-root", default=os.environ.get("DENOISE_DATA_ROOT"))
    args, _ = p.parse_known_args(sys.argv[1:])
    return Path(args.data_root).resolve() if args.data_root else None


@st.cache_resource
def _model(name: str):
    return load_model(name, device="cpu")


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


@st.cache_data(max_entries=64, show_spinner=False)
def _denoise(_scan, key: str, method: str):
    den = _model(method.split(":", 1)[1]) if ":" in method else ClassicalDenoiser(method)
    result, secs = timed(denoise_scan, _scan, den)
    return result.array, secs


def main() -> None:
    st.set_page_config(page_title="denoise viewer", layout="wide")
    st.title("denoise viewer")
    st.caption("Research use only — not for diagnosis.")
    shipped = [m["name"] for m in list_pretrained()]
    root = _data_root()

    with st.sidebar:
        st.header("Scan")
        sources = (["sample"] if SAMPLE_DIR else []) + (["data root"] if root else []) + ["upload"]
        source = st.radio("source", sources, horizontal=True)
        if not SAMPLE_DIR and not root:
            st.info("No sample scans in this installation. Start the viewer on a folder of your scans with "
                    "`denoise view --data-root DIR`, or upload a scan here.")
        scan, scan_key = _pick_scan(source, root)
        if scan is None:
            st.stop()
        st.header("Noise")
        mode = st.radio("mode", ["simulate", "real"], horizontal=True,
                        help="simulate: the scan is clean, noise is added; real: the scan is already noisy")
        ct = scan.modality == "CT"
        if mode == "simulate":
            kinds = ["lowdose", "gaussian", "poisson"] if ct else ["rician", "gaussian", "speckle", "poisson"]
            kind = st.selectbox("noise kind", kinds)
            default = 0.25 if kind == "lowdose" else 0.05
            level = st.slider("level", 0.01, 1.0 if kind == "lowdose" else 0.2, default, 0.01)
            seed = st.number_input("seed", 0, 10_000, 0)
        st.header("Methods")
        models = [f"dae:{m}" for m in shipped if (m.startswith("ct") == ct) and "vae" not in m and "sparse" not in m]
        models += [f"{m.split('-')[0]}:{m}" for m in shipped if ("vae" in m or "sparse" in m) and not ct]
        options = models + CLASSICAL
        default_methods = [o for o in options if o.startswith("dae:") and o.endswith("-2d")][:1] + ["nlm"]
        methods = st.multiselect("methods", options, default=[m for m in default_methods if m in options])
        ckpt = st.file_uploader("or a checkpoint (.pt)", type=["pt"])
        strength = st.slider("strength", 0.0, 1.0, 1.0, 0.05,
                             help="blend each result with the input: 0 = the input, 1 = full denoising "
                                  "(as denoise run --strength); lower keeps more texture and faint structure")

    clean = scan if mode == "simulate" else None
    if mode == "simulate":
        spec = f"{kind}:{level:g}"
        parse_noise(spec)
        with st.spinner("adding noise..."):
            noisy = _noisy(scan, scan_key, spec, int(seed))
    else:
        noisy, spec = scan, "none"
    noisy_key = f"{scan_key}|{spec}|{seed if mode == 'simulate' else ''}"
    results: dict[str, tuple[np.ndarray, float]] = {}
    for method in methods:
        with st.spinner(f"denoising with {method}..."):
            results[method] = _denoise(noisy, noisy_key, method)
    if ckpt is not None:
        results["checkpoint"] = _user_checkpoint(noisy, noisy_key, ckpt)
    if strength < 1.0:  # the blend of `denoise_array(strength=...)`, on the cached full-strength results
        results = {m: (noisy.array + np.float32(strength) * (arr - noisy.array), secs) for m, (arr, secs) in results.items()}

    col1, col2, col3 = st.columns(3)
    planes = ["axial", "coronal", "sagittal"] if scan.array.ndim >= 3 else ["axial"]
    plane = col1.selectbox("plane", planes)
    n = n_slices(scan.array, plane)
    index = col2.slider("slice", 0, max(n - 1, 0), n // 2) if n > 1 else 0
    ref_img = plane_slice(scan.array, plane, index)
    presets = window_presets(scan.modality, ref_img)
    preset = col3.selectbox("window", list(presets) + ["manual"])
    if preset == "manual":
        c, w = st.columns(2)
        center = c.number_input("center", value=float(np.median(ref_img)))
        width = w.number_input("width", value=float(np.ptp(ref_img) or 1.0), min_value=1e-6)
    else:
        center, width = presets[preset]
    zoom = st.slider("zoom", 1.0, 4.0, 1.0, 0.5)

    panels = [("noisy", noisy.array)] + [(m, r[0]) for m, r in results.items()]
    if clean is not None:
        panels.append(("clean", clean.array))
    if results:
        first = next(iter(results))
        panels.append((f"residual (noisy - {first})", noisy.array - results[first][0]))
        if clean is not None:
            panels.append((f"|error| {first}", np.abs(results[first][0] - clean.array)))
    cols = st.columns(min(len(panels), 4))
    for i, (name, arr) in enumerate(panels):
        img = plane_slice(arr, plane, index)
        c_, w_ = (0.0, width / 2) if name.startswith("residual") else ((width / 4, width / 2) if name.startswith("|error|") else (center, width))
        cols[i % len(cols)].image(_zoom(to_display(img, c_, w_), zoom), caption=name, width="stretch")

    if results:
        st.subheader("Before / after")
        which = st.selectbox("method", list(results), key="compare_method")
        split = st.slider("split", 0, 100, 50, key="split")
        before, after = plane_slice(noisy.array, plane, index), plane_slice(results[which][0], plane, index)
        cut = int(before.shape[1] * split / 100)
        combo = np.concatenate([before[:, :cut], after[:, cut:]], axis=1)
        st.image(_zoom(to_display(combo, center, width), zoom), caption=f"noisy | {which}", width=420)

    st.subheader("Metrics")
    table = pd.DataFrame(metrics_rows(clean, noisy, results, plane=plane, index=index)).set_index("method")
    numeric = [c for c in table.columns if c not in ("seconds", "data range")]
    st.table(table.style.highlight_max(subset=numeric, color="#c6efce").format(precision=3))
    if clean is not None and "PSNR fg volume" in table:
        st.bar_chart(table["PSNR fg volume"])
    st.caption("PSNR/SSIM: data range = clean 99.5th foreground percentile (MR) or 2000 HU (CT); "
               "fg = foreground mask of the clean scan (threshold, closing, hole fill, dilation).")

    _insight_tabs(shipped, noisy, plane, index, ct)

    if results:
        name = next(iter(results))
        data, fname, mime = scan_to_download(noisy.with_array(results[name][0]), name.replace(":", "_"))
        st.download_button("download denoised scan", data, file_name=fname, mime=mime)


def _pick_scan(source: str, root: Path | None):
    try:
        if source == "sample":
            options = list_scans_under(SAMPLE_DIR)
            pick = st.selectbox("sample scan", options, index=options.index(DEFAULT_SAMPLE) if DEFAULT_SAMPLE in options else 0)
            return _read(str(SAMPLE_DIR), pick), f"sample:{pick}"
        if source == "data root":
            options = list_scans_under(root)
            outside = links_outside(root)
            if outside:
                st.warning(f"{len(outside)} file(s) under the data root link outside it and are not offered "
                           f"(e.g. {outside[0]})")
            pick = st.selectbox("scan under data root", options) if options else None
            typed = st.text_input("or a path relative to the data root", "")
            rel = typed or pick
            if not rel:
                st.info("no scans under the data root")
                return None, ""
            return _read(str(root), rel), f"root:{rel}"
        up = st.file_uploader("NIfTI (.nii/.nii.gz) or a zip of one DICOM series", type=["nii", "gz", "zip"])
        if up is None:
            st.info("upload a scan")
            return None, ""
        data = up.getvalue()
        return _upload(up.name, data), f"upload:{up.name}:{len(data)}"
    except ValueError as exc:
        st.error(str(exc))
        return None, ""


def _user_checkpoint(noisy, key: str, upload) -> tuple[np.ndarray, float]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".pt") as fh:
        fh.write(upload.getvalue())
        fh.flush()
        model = load_model(fh.name, device="cpu")
    result, secs = timed(denoise_scan, noisy, model)
    return result.array, secs


def _insight_tabs(shipped: list[str], noisy, plane: str, index: int, ct: bool) -> None:
    import torch

    from denoise.normalize import reference_intensity

    tabs = st.tabs(["VAE", "sparse", "anomaly"])
    scale = 1.0 if ct else reference_intensity(noisy.array)
    img = plane_slice(noisy.array, plane, index) / scale
    with tabs[0]:
        vae = next((m for m in shipped if m.startswith("vae")), None)
        if vae and not ct:
            net = _model(vae).net
            samples = net.sample(4, seed=0)[:, 0].numpy()
            st.image([to_display(s, 0.5, 1.0) for s in samples], caption=["N(0, I) sample"] * 4, width=128)
            other = plane_slice(noisy.array, plane, max(index - 5, 0)) / scale
            a = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
            b = torch.from_numpy(np.ascontiguousarray(other, dtype=np.float32))[None, None]
            path = net.interpolate(a, b, steps=5)[:, 0].numpy()
            st.image([to_display(p, 0.5, 1.0) for p in path], caption=[f"t={t / 4:.2f}" for t in range(5)], width=128)
        else:
            st.info("no shipped VAE for this modality")
    with tabs[1]:
        sp = next((m for m in shipped if m.startswith("sparse")), None)
        if sp and not ct:
            from denoise.models import sparsity_fraction

            net = _model(sp).net
            with torch.no_grad():
                _, z = net.forward_with_latent(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])
            counts, edges = np.histogram(z.numpy().ravel(), bins=40)
            st.bar_chart(pd.DataFrame({"count": counts}, index=np.round(edges[:-1], 3)))
            st.write(f"near-zero latent units: {sparsity_fraction(z):.1%}")
        else:
            st.info("no shipped sparse model for this modality")
    with tabs[2]:
        ae = next((m for m in shipped if m.startswith("sparse") or m.startswith("vae")), None)
        if ae and not ct:
            net = _model(ae).net
            with torch.no_grad():
                rec = net.predict(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])[0, 0].numpy()
            err = np.abs(rec - img)
            st.image(to_display(err, float(np.percentile(err, 99)) / 2, float(np.percentile(err, 99)) + 1e-6),
                     caption=f"reconstruction error of {ae}: bright = unlike anything seen in training", width=300)
        else:
            st.info("anomaly maps need a bottleneck autoencoder for this modality")


def _zoom(img: np.ndarray, factor: float) -> np.ndarray:
    if factor <= 1:
        return img
    h, w = img.shape
    ch, cw = int(h / factor), int(w / factor)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    return np.kron(crop, np.ones((int(factor), int(factor)), dtype=img.dtype))


if __name__ == "__main__":  # `streamlit run` executes this file as __main__
    main()
