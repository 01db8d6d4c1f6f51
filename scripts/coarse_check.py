"""How a 2D model treats anatomy at coarser pixels than its training volumes (issue #28: real EPI,
DWI and clinical 2D series have 2-3.5 mm pixels; the training volumes 1 mm).

    python scripts/coarse_check.py [MODEL_OR_CHECKPOINT[@F] ...] [--levels 0.01,0.03] [--out FILE.md]   # default: mr-2d

The held-out T1's middle slab (`denoise.bench_cases.T1_SLABS`, 16 axial slices, none in any model's
training) made coarser in-plane by a factor f: block-averaged f x f ("block"), or its k-space cut to
the central 1/f in each in-plane axis and the magnitude taken ("kspace": the sinc blur and Gibbs
ringing of a real low-resolution acquisition; the image is then sampled on the coarse grid), or
that acquisition zero-filled back to the 1 mm grid ("k-space on 1 mm": smooth anatomy at fine
pixels, as zero-fill interpolated series store it).
Rician noise at each level (fraction of the robust maximum, `denoise.noise.add_noise`, seed 0) is
added to the coarse clean slab, the model denoises it slice by slice (no spacing given: one plane),
and the table gives the fg PSNR gain over the noisy input (dB; `denoise.metrics.foreground_mask`
of the coarse clean slab, data range = its `data_range_for`). ``NAME@F``: the model told F x the
noise level it estimates (`denoise run --noise-scale F`). A gain below 0 at a low level means the
model removes coarse anatomy as if it were noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from denoise.bench_cases import T1_SLABS, t1_slabs
from denoise.infer import denoise_array, load_model
from denoise.metrics import data_range_for, foreground_mask, psnr
from denoise.noise import add_noise
from denoise.noise_mr import acquired_coarser, reconstructed

ROOT = Path(__file__).resolve().parents[1]
FACTORS = [("1 mm", None, 1), ("2x block", "block", 2), ("2x k-space", "kspace", 2), ("2x k-space on 1 mm", "zerofill", 2),
           ("3x block", "block", 3), ("3x k-space", "kspace", 3)]


def coarsen(slab: np.ndarray, how: str | None, f: int) -> np.ndarray:
    """``slab`` (z, y, x) at f times the pixel size in-plane: block mean, or k-space truncation."""
    if how is None:
        return slab.astype(np.float32)
    z, y, x = slab.shape
    a = slab[:, : y // f * f, : x // f * f].astype(np.float64)
    if how == "block":
        return a.reshape(z, y // f, f, x // f, f).mean(axis=(2, 4)).astype(np.float32)
    if how == "zerofill":  # the coarse acquisition zero-filled back to the 1 mm grid: smooth, ringing, fine pixels
        return reconstructed(a, zf=f)
    return acquired_coarser(a, f)


def main(args: list[str]) -> int:
    out, levels = None, [0.01, 0.03]
    if "--out" in args:
        i = args.index("--out")
        out, args = Path(args[i + 1]), args[:i] + args[i + 2:]
    if "--levels" in args:
        i = args.index("--levels")
        levels, args = [float(v) for v in args[i + 1].split(",")], args[:i] + args[i + 2:]
    models = args or ["mr-2d"]
    slab = t1_slabs(ROOT.parent / "shared" / "data", [T1_SLABS[1]])[0].array
    cases = []
    for label, how, f in FACTORS:
        clean = coarsen(slab, how, f)
        mask, rng = foreground_mask(clean), data_range_for(clean, "MR")
        for level in levels:
            noisy = add_noise(clean, f"rician:{level}", seed=0)
            cases.append((label, level, clean, noisy, mask, rng))
    head = "| model | " + " | ".join(f"{lab}, {lev:.0%}" for lab, lev, *_ in cases) + " |"
    lines = ["fg PSNR gain over the noisy input (dB), held-out T1 slab made coarser in-plane, Rician noise "
             f"(`python scripts/coarse_check.py {' '.join(models)}`)", "", head,
             "|---|" + "---|" * len(cases)]
    for spec in models:
        name, _, scale = spec.partition("@")
        model = load_model(name)
        if scale:
            model = model.variant(noise_scale=float(scale))
        gains = []
        for _, _, clean, noisy, mask, rng in cases:
            den = denoise_array(noisy, model, modality="MR")
            gains.append(psnr(clean, den, data_range=rng, mask=mask) - psnr(clean, noisy, data_range=rng, mask=mask))
        lines.append(f"| {spec} | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
