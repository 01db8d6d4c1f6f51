"""The viewer's insight tabs (streamlit UI): a VAE's samples and interpolation, a sparse model's latent
histogram, an autoencoder's anomaly map. Models come from `load_model`, cached per process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from denoise import load_model
from denoise.viewer.support import n_slices, plane_slice, to_display

__all__ = ["insight_tabs", "anomaly_tab", "model"]


@st.cache_resource
def model(name: str):
    """A shipped model on the CPU, loaded once per process."""
    return load_model(name, device="cpu")


def insight_tabs(shipped: dict[str, str], noisy, plane: str, index: int, ct: bool) -> None:
    """The VAE, sparse-latent and anomaly tabs for the shown slice (MR; shipped models only;
    ``shipped``: the shipped models of the scan's modality, name -> kind)."""
    import torch

    from denoise.normalize import reference_intensity

    tabs = st.tabs(["VAE", "sparse", "anomaly"])
    scale = 1.0 if ct else reference_intensity(noisy.array)
    img = plane_slice(noisy.array, plane, index) / scale
    with tabs[0]:
        vae = next((m for m, kind in shipped.items() if kind == "vae"), None)
        if vae and not ct:
            net = model(vae).net
            c1, c2, c3 = st.columns(3)
            n_samples = c1.selectbox("samples", [4, 8, 16], key="vae_samples")
            seed = int(c2.number_input("sample seed", 0, 1_000_000, 0, key="vae_seed"))
            last = n_slices(noisy.array, plane) - 1
            if not 0 <= st.session_state.get("vae_other", -1) <= last:
                st.session_state["vae_other"] = max(index - 5, 0)
            other_index = int(c3.number_input("interpolate to slice", 0, last, key="vae_other"))
            samples = net.sample(n_samples, seed=seed)[:, 0].numpy()
            st.image([to_display(s, 0.5, 1.0) for s in samples], caption=["N(0, I) sample"] * n_samples, width=128)
            st.caption(f"{n_samples} latents drawn from the prior N(0, I) (seed {seed}) and decoded by {vae}: what the "
                       f"model thinks a {net.config.patch_size}-pixel patch looks like when it is given no image at all.")
            other = plane_slice(noisy.array, plane, other_index) / scale
            a = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
            b = torch.from_numpy(np.ascontiguousarray(other, dtype=np.float32))[None, None]
            path = net.interpolate(a, b, steps=5)[:, 0].numpy()
            st.image([to_display(p, 0.5, 1.0) for p in path], caption=[f"t={t / 4:.2f}" for t in range(5)], width=128)
            st.caption(f"Latent interpolation: the posterior means of this slice ({index}, t=0) and of slice "
                       f"{other_index} (t=1), mixed linearly and decoded. A smooth morph means a smooth latent space; "
                       "the ends are the VAE's reconstructions, not the slices themselves.")
        else:
            st.info("no shipped VAE for this modality")
    with tabs[1]:
        sp = next((m for m, kind in shipped.items() if kind == "sparse"), None)
        if sp and not ct:
            from denoise.models import sparsity_fraction

            net = model(sp).net
            with torch.no_grad():
                _, z = net.forward_with_latent(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])
            counts, edges = np.histogram(z.numpy().ravel(), bins=40)
            labels = [f"{e:.2g}" for e in edges[:-1]]
            st.bar_chart(pd.DataFrame({"latent value (bin start)": labels, "units": counts}),
                         x="latent value (bin start)", y="units", x_label="latent value (bin start)",
                         y_label="latent units in the bin")
            st.write(f"near-zero latent units: {sparsity_fraction(z):.1%} (the L1 penalty on the code pushes units to "
                     "exactly zero: a sparse code uses few of them per image)")
        else:
            st.info("no shipped sparse model for this modality")
    with tabs[2]:
        anomaly_tab(shipped, plane_slice(noisy.array, plane, index), ct)


def anomaly_tab(shipped: dict[str, str], slice_: np.ndarray, ct: bool) -> None:
    """The shown slice's anomaly map by `denoise.anomaly.anomaly_map` (what `denoise anomaly` writes):
    a bottleneck autoencoder's reconstruction error, a VAE's KL term, or the z-score baseline."""
    from denoise.anomaly import POLARITIES, anomaly_map
    from denoise.viewer.compare import colorbar_png, nice_limit, overlay_rgb, scan_units

    aes = [] if ct else [m for m, kind in shipped.items() if kind in ("vae", "sparse", "cae")]
    choices = [*(f"{m}: residual" for m in aes), *(f"{m}: kl" for m in aes if shipped[m] == "vae"), "zscore (no model)"]
    pick = st.selectbox("anomaly score", choices, key="anomaly_score",
                        help="residual: |slice - the autoencoder's reconstruction|; kl: the VAE's KL term per latent "
                             "location; zscore: (x - mean) / std of the foreground, the baseline "
                             "(docs/autoencoders.md measures them on MS lesions)")
    polarity = st.selectbox("polarity", list(POLARITIES), key="anomaly_polarity",
                            help="bright: only brighter than expected (FLAIR/T2 lesions, enhancement)")
    name, _, score = pick.partition(": ")
    score = score or "zscore"
    net = None if score == "zscore" else model(name)
    amap = anomaly_map(slice_, net, score=score, polarity=polarity, modality="CT" if ct else "MR")
    limit = nice_limit(float(np.percentile(amap, 99.5)) or 1.0)
    low, high = np.percentile(slice_, [1, 99])
    units = {"kl": "nats", "zscore": "SD"}.get(score, scan_units("CT" if ct else "MR"))
    left, right = st.columns([4, 1])
    left.image(overlay_rgb(to_display(slice_, (low + high) / 2, high - low), amap, limit), width=360,
               caption=f"anomaly map ({pick}, {polarity}) over the slice: coloured = unlike what the model learned as "
                       "normal; research use only, not a diagnosis")
    right.image(colorbar_png(limit, units, "anomaly", "magma", signed=False), width=110,
                caption=f"anomaly colour bar, 0-{limit:g} {units}")
    if ct:
        st.caption("no shipped autoencoder for CT: only the z-score baseline")
