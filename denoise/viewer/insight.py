"""The viewer's insight tabs (streamlit UI): a VAE's samples and interpolation, a sparse model's latent
histogram, an autoencoder's anomaly map. Models come from `load_model`, cached per process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from denoise import load_model
from denoise.viewer.support import plane_slice, to_display

__all__ = ["insight_tabs", "model"]


@st.cache_resource
def model(name: str):
    """A shipped model on the CPU, loaded once per process."""
    return load_model(name, device="cpu")


def insight_tabs(shipped: list[str], noisy, plane: str, index: int, ct: bool) -> None:
    """The VAE, sparse-latent and anomaly tabs for the shown slice (MR; shipped models only)."""
    import torch

    from denoise.normalize import reference_intensity

    tabs = st.tabs(["VAE", "sparse", "anomaly"])
    scale = 1.0 if ct else reference_intensity(noisy.array)
    img = plane_slice(noisy.array, plane, index) / scale
    with tabs[0]:
        vae = next((m for m in shipped if m.startswith("vae")), None)
        if vae and not ct:
            net = model(vae).net
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

            net = model(sp).net
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
            net = model(ae).net
            with torch.no_grad():
                rec = net.predict(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])[0, 0].numpy()
            err = np.abs(rec - img)
            st.image(to_display(err, float(np.percentile(err, 99)) / 2, float(np.percentile(err, 99)) + 1e-6),
                     caption=f"reconstruction error of {ae}: bright = unlike anything seen in training", width=300)
        else:
            st.info("anomaly maps need a bottleneck autoencoder for this modality")
