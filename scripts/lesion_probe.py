"""Lesion contrast kept across sizes and contrasts (issue #31 item 2), with fg-PSNR, for models and BM3D.

    python scripts/lesion_probe.py [MODEL_OR_CHECKPOINT[@F] ...] [--levels rician:0.05,rician:0.09]
                                   [--out docs/benchmarks/lesions] [--no-bm3d]      # default model: mr-2d

``NAME@F`` runs the model told F x the noise level it estimates (``load_model(noise_scale=F)``;
without it, the checkpoint's own operating point).

The held-out T1's three 16-slice slabs (docs/benchmarks.md's MR cases). Into each clean slab go nine
spherical lesions, diameters 3/5/8 mm x contrasts +3/5/10% of the slab's robust maximum, centred in
its middle slice at points spread over the brain (`denoise.fidelity.insert_spheres`); then Rician
noise (seeded per slab and level; the same draws on the slab without lesions), and each method
denoises both. Per lesion: the fraction of its contrast kept, the mean of (output with lesions -
output without) over the lesion in its middle slice divided by the contrast inserted
(`denoise.fidelity.paired_contrast_kept`: the noise cancels, the noisy input keeps exactly 1),
averaged over the three slabs; per method and level: the fg-PSNR of the output with lesions against
the clean slab with its lesions. BM3D runs with its oracle sigma (the true noise std
on the model's scale). Writes OUT/results.csv and OUT/results.md. ~2 minutes per model, ~4 for BM3D.
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
SIZES_MM = (3.0, 5.0, 8.0)
CONTRASTS = (0.03, 0.05, 0.10)


def _load(spec: str):
    """``NAME`` or ``NAME@F`` (noise_scale F) as a model."""
    name, _, scale = spec.rpartition("@") if "@" in spec else (spec, "", "")
    return load_model(name, device="cpu", **({"noise_scale": float(scale)} if scale else {}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["mr-2d"])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--levels", default="rician:0.05,rician:0.09")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "lesions")
    ap.add_argument("--no-bm3d", action="store_true")
    args = ap.parse_args(argv)
    methods = {m: _load(m) for m in args.models}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        slabs = sorted(write_t1_slabs(args.data, Path(tmp) / "mr", T1_SLABS).glob("*.nii.gz"))
        for k, path in enumerate(slabs):
            scan = read_scan(path)
            original = scan.array
            peak = reference_intensity(original)
            lesions = [(d, c * peak) for d in SIZES_MM for c in CONTRASTS]
            with_lesions, masks = fidelity.insert_spheres(original, lesions, scan.spacing)
            clean = scan.with_array(with_lesions)
            fg = foreground_mask(clean.array)
            for j, level in enumerate(args.levels.split(",")):
                noisy = add_noise(clean, level, seed=100 * k + j)
                plain = add_noise(scan, level, seed=100 * k + j)  # the same noise draws, no lesions
                denoisers = dict(methods)
                if bm3d_available() and not args.no_bm3d:
                    _, scale = normalization_for("MR").params(noisy.array)
                    oracle = float(np.std((noisy.array - clean.array)[fg])) / scale
                    denoisers["bm3d (oracle sigma)"] = ClassicalDenoiser("bm3d", sigma=oracle, rician=True)
                outputs = {name: (denoise_scan(noisy, m).array, denoise_scan(plain, m).array) for name, m in denoisers.items()}
                outputs["noisy"] = (noisy.array, plain.array)
                for name, (den, den_plain) in outputs.items():
                    p = psnr(clean.array, den, data_range=peak, mask=fg)
                    for (d, c), (les, _) in zip(lesions, masks):
                        rows.append({"slab": path.name, "noise": level, "method": name, "diameter_mm": d,
                                     "contrast": round(c / peak, 3),
                                     "kept": fidelity.paired_contrast_kept(den, den_plain, les, c), "psnr_fg": p})
            print(f"slab {k + 1}/{len(slabs)} done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["Lesion contrast kept (1 = all) on the held-out T1's three slabs, nine spherical lesions per slab "
             f"(`python scripts/lesion_probe.py {' '.join(args.models)}`); fg PSNR with the lesions in the clean reference.", ""]
    sizes = " | ".join(f"{d:g} mm {c:.0%}" for d in SIZES_MM for c in CONTRASTS)
    lines += [f"| noise | method | fg PSNR (dB) | {sizes} |", "|---|---|---|" + "---|" * (len(SIZES_MM) * len(CONTRASTS))]
    for level in args.levels.split(","):
        for name in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["noise"] == level and r["method"] == name]
            cells = [np.mean([r["kept"] for r in sel if r["diameter_mm"] == d and r["contrast"] == round(c, 3)])
                     for d in SIZES_MM for c in CONTRASTS]
            p = np.mean([v for _, v in {(r["slab"], r["psnr_fg"]) for r in sel}])
            lines.append(f"| {level} | {name} | {float(p):.2f} | " + " | ".join(f"{v:.2f}" for v in cells) + " |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
