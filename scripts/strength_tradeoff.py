"""Denoising strength against lesion fidelity (issue #31 item 3): fg-PSNR and inserted-lesion contrast kept.

    python scripts/strength_tradeoff.py [--data ../shared/data] [--out docs/benchmarks/strength] [--noise rician:0.05]

The held-out T1's three 16-slice slabs (docs/benchmarks.md's MR cases), a 3-voxel-radius lesion at +5%
of the data range inserted in the middle slice (`denoise.fidelity.insert_lesion`), Rician noise; then
mr-2d at `--strength` S in 0, 0.25, 0.5, 0.75, 1 (the output blended with the input), mr-2d told
S x the noise level it estimates (S = its `noise_scale`, 0.5 ... 1.25; shipped: 1) and BM3D with its oracle sigma scaled by S in 0.25 ... 1.25 (`ClassicalDenoiser(strength=S)`,
the classical methods' own strength control). Each point: fg-PSNR against the clean slab with the lesion, and the
fraction of the lesion's contrast kept, averaged over the slabs. Writes OUT/results.csv, OUT/results.md
and OUT/strength_tradeoff.png. Takes ~5 minutes on 2 cores (BM3D most of it).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

from denoise import fidelity  # noqa: E402
from denoise.bench_cases import T1_SLABS, write_t1_slabs
from denoise.infer import denoise_scan, load_model  # noqa: E402
from denoise.io import read_scan  # noqa: E402
from denoise.metrics import foreground_mask, psnr  # noqa: E402
from denoise.models import ClassicalDenoiser, bm3d_available  # noqa: E402
from denoise.noise import add_noise  # noqa: E402
from denoise.normalize import normalization_for, reference_intensity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL_S = [0.0, 0.25, 0.5, 0.75, 1.0]
BM3D_S = [0.25, 0.5, 0.75, 1.0, 1.25]
NOISE_S = [0.5, 0.65, 0.8, 0.875, 1.0, 1.25]
CONTRAST = 0.05  # of the data range, as docs/benchmarks.md's probe


def _point(case: tuple, method: str, s: float, den: np.ndarray) -> dict:
    """One slab's fg-PSNR and lesion contrast kept for one method at strength ``s``."""
    name, clean, original, masks, peak, mask = case
    return {"slab": name, "method": method, "strength": s, "psnr_fg": psnr(clean, den, data_range=peak, mask=mask),
            "lesion_contrast_kept": fidelity.lesion_contrast_kept(original, den, masks, CONTRAST * peak)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "strength")
    ap.add_argument("--noise", default="rician:0.05")
    args = ap.parse_args(argv)
    model = load_model("mr-2d", device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        slabs = sorted(write_t1_slabs(args.data, Path(tmp) / "mr", T1_SLABS).glob("*.nii.gz"))
        for k, path in enumerate(slabs):
            clean = read_scan(path)
            original = clean.array  # before the lesion: its own lesion-vs-ring difference is subtracted
            peak = reference_intensity(original)
            with_lesion, masks = fidelity.insert_lesion(original, CONTRAST * peak)
            clean = clean.with_array(with_lesion)
            noisy = add_noise(clean, args.noise, seed=k)
            mask = foreground_mask(clean.array)
            _, scale = normalization_for("MR").params(noisy.array)
            oracle = float(np.std((noisy.array - clean.array)[mask])) / scale

            case = (path.name, clean.array, original, masks, peak, mask)
            full = denoise_scan(noisy, model).array
            for s in MODEL_S:  # the blend `denoise run --strength` makes, from the one full-strength result
                rows.append(_point(case, "mr-2d blended", s, noisy.array + np.float32(s) * (full - noisy.array)))
            for s in NOISE_S:  # the other dial: the noise level the network is told
                rows.append(_point(case, "mr-2d told noise x S", s, denoise_scan(noisy, model.variant(noise_scale=s)).array))
            if bm3d_available():
                for s in BM3D_S:
                    bm3d = ClassicalDenoiser("bm3d", sigma=oracle, rician=True, strength=s)
                    rows.append(_point(case, "bm3d (oracle sigma x S)", s, denoise_scan(noisy, bm3d).array))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"Strength against lesion fidelity at {args.noise} (held-out T1, three slabs; "
             "`python scripts/strength_tradeoff.py`). mr-2d: output blended with the input (`--strength S`), or "
             "told S x the noise level it estimates (`load_model(noise_scale=S)`); BM3D: oracle sigma x S.", "", "| method | S | fg PSNR (dB) | lesion contrast kept |", "|---|---|---|---|"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for method in methods:
        pts = []
        for s in sorted({r["strength"] for r in rows if r["method"] == method}):
            sel = [r for r in rows if r["method"] == method and r["strength"] == s]
            p, c = np.mean([r["psnr_fg"] for r in sel]), np.mean([r["lesion_contrast_kept"] for r in sel])
            pts.append((c, p, s))
            lines.append(f"| {method} | {s:g} | {p:.2f} | {c:.2f} |")
        ax.plot([q[0] for q in pts], [q[1] for q in pts], "o-", label=method)
        for c, p, s in pts:
            ax.annotate(f"{s:g}", (c, p), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("lesion contrast kept (1 = all)")
    ax.set_ylabel("fg PSNR (dB)")
    ax.set_title(f"strength S at {args.noise}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "strength_tradeoff.png", dpi=120)
    (args.out / "results.md").write_text("\n".join(lines) + "\n\n![trade-off](strength/strength_tradeoff.png)\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
