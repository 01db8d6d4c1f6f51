"""The model card and before/after measures of an adapted checkpoint (`denoise.adapt`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.adapt_data import AdaptSource
from denoise.realnoise import no_reference_measures

__all__ = ["adapt_measures", "write_card"]

MEASURE_SLICES = 12  # central held-out slices denoised for the before/after measures


def adapt_measures(val_sources: list[AdaptSource], start_net: torch.nn.Module, net: torch.nn.Module,
                   info: dict[str, Any]) -> dict[str, dict[str, float]]:
    """`denoise.realnoise.no_reference_measures` of the starting and the adapted model on the
    held-out data (up to `MEASURE_SLICES` central slices of each validation scan), averaged."""
    from denoise.infer import LearnedDenoiser, denoise_array

    rows: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for src in val_sources[:3]:
        raw = src.raw
        z = raw.shape[0]
        lo = max(0, (z - MEASURE_SLICES) // 2)
        vol = raw[lo : lo + MEASURE_SLICES]
        for key, model in (("before", start_net), ("after", net)):
            den = LearnedDenoiser(model, info, device="cpu")
            out = denoise_array(vol, den, modality=src.modality, spacing=src.spacing or None)
            rows[key].append(no_reference_measures(vol, out))
    return {k: {m: float(np.nanmean([r[m] for r in v])) for m in v[0]} for k, v in rows.items() if v}


def write_card(path: Path, info: dict[str, Any]) -> Path:
    """A Markdown model card for an adapted checkpoint (no file names, no patient data)."""
    a = info["adapt"]
    curve = "\n".join(f"| {s} | {v:.5g} |" for s, v in a["val_curve"])
    m = a.get("measures", {})
    names = {"sigma_before": "noise estimate of the input", "sigma_after": "noise estimate of the output",
             "removed_image_corr": "removed component vs the image (correlation)",
             "pattern_ratio": "2-pixel pattern, output / input"}
    meas = "\n".join(f"| {names[k]} | {m['before'][k]:.4g} | {m['after'][k]:.4g} |" for k in names
                     if "before" in m and k in m["before"])
    method = {"n2n": "Noise2Noise on repeated acquisitions (one repeat in, another as target)",
              "r2r": f"recorrupted-to-recorrupted pairs from each scan ({a.get('noise_model') or ''})",
              "blindspot": f"blind-spot masking (mask radius {a['radius']}; {a.get('noise_model') or ''})",
              "sure": f"GainTuning: one gain per convolution channel learnt by SURE ({a.get('noise_model') or ''})"}[a["method"]]
    text = f"""# {info['name']} (adapted with `denoise adapt`)

**Research use only. Not for diagnosis or treatment.** This model was fine-tuned without clean targets
on the user's own noisy scans; nothing guarantees it on other scanners, protocols or anatomy.

- Started from: `{a['init']}` ({info['model']['spatial_dims']}D {info['model']['kind']}, its architecture and
  intensity scaling kept; training noise of the start: `{info.get('noise', '?')}`)
- Method: {method}
- Data: {a['scans']} {a['modality']} scan(s), {a['volumes']} volume(s), {a['slices']} slices; shapes {', '.join(a['shapes'])};
  {a['pairs']} ordered repeat pair(s). {' '.join(a['notes'])}
- Validation: {a['split']}; self-supervised loss {a['start_val_loss']:.5g} (start) -> {a['best_val_loss']:.5g}
  (best, step {a['best_step']}). The best weights are kept, so the start is never beaten by a worse model.
- Training: {a['steps']} steps of {a['batch_size']} patches of {a['patch']} px, AdamW lr {a['lr']}, {a['seconds']:.0f} s
  (budget {a['budget_minutes']:.1f} min; ended by {a['stopped']}).

## Validation loss

| step | loss |
|---|---|
{curve}

## No-reference measures on held-out data (`denoise.realnoise.no_reference_measures`)

| measure | start model | adapted |
|---|---|---|
{meas}
"""
    path.write_text(text)
    return path
