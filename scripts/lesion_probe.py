"""Lesion contrast kept across sizes and contrasts (issue #31 item 2), with fg-PSNR, for models and BM3D.

    python scripts/lesion_probe.py [MODEL_OR_CHECKPOINT[+3planes][@F] ...] [--levels rician:0.05,rician:0.09]
                                   [--out docs/benchmarks/lesions] [--no-bm3d | --reuse-bm3d]  # default: mr-2d

``NAME@F`` runs the model told F x the noise level it estimates (``load_model(noise_scale=F)``;
without it, the checkpoint's own operating point); ``NAME+3planes`` runs a 2D model along the three
planes (``load_model(planes=3)``, what mr-3d does with mr-2d), e.g. a candidate checkpoint.
``--reuse-bm3d`` takes the BM3D and noisy rows from OUT/results.csv of an earlier run with the same
levels (their noise draws are seeded, so they are the same) instead of running BM3D again.

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
    """``NAME``, ``NAME@F`` (noise_scale F), ``NAME+3planes`` or ``NAME+3planes@F`` as a model."""
    name, _, scale = spec.rpartition("@") if "@" in spec else (spec, "", "")
    kwargs = {"noise_scale": float(scale)} if scale else {}
    if name.endswith("+3planes"):
        name, kwargs["planes"] = name.removesuffix("+3planes"), 3
    return load_model(name, device="cpu", **kwargs)


REUSED = ("bm3d (oracle sigma)", "noisy")


def _reused_rows(path: Path, levels: list[str]) -> list[dict]:
    """BM3D's and the noisy input's rows of an earlier results.csv, as the probe writes them."""
    if not path.is_file():
        raise SystemExit(f"--reuse-bm3d: {path} does not exist; run once without it")
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] in REUSED and r["noise"] in levels]
    if not any(r["method"] == REUSED[0] for r in rows):
        raise SystemExit(f"--reuse-bm3d: {path} has no BM3D rows for {', '.join(levels)}")
    return [dict(r, diameter_mm=float(r["diameter_mm"]), contrast=float(r["contrast"]), kept=float(r["kept"]),
                 psnr_fg=float(r["psnr_fg"])) for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["mr-2d"])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--levels", default="rician:0.05,rician:0.09")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "lesions")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--no-bm3d", action="store_true")
    what.add_argument("--reuse-bm3d", action="store_true")
    args = ap.parse_args(argv)
    methods = {m: _load(m) for m in args.models}
    levels = args.levels.split(",")
    reused = _reused_rows(args.out / "results.csv", levels) if args.reuse_bm3d else []
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
            for j, level in enumerate(levels):
                noisy = add_noise(clean, level, seed=100 * k + j)
                plain = add_noise(scan, level, seed=100 * k + j)  # the same noise draws, no lesions
                denoisers = dict(methods)
                if bm3d_available() and not (args.no_bm3d or args.reuse_bm3d):
                    _, scale = normalization_for("MR").params(noisy.array)
                    oracle = float(np.std((noisy.array - clean.array)[fg])) / scale
                    denoisers["bm3d (oracle sigma)"] = ClassicalDenoiser("bm3d", sigma=oracle, rician=True)
                outputs = {name: (denoise_scan(noisy, m).array, denoise_scan(plain, m).array) for name, m in denoisers.items()}
                if not args.reuse_bm3d:
                    outputs["noisy"] = (noisy.array, plain.array)
                for name, (den, den_plain) in outputs.items():
                    p = psnr(clean.array, den, data_range=peak, mask=fg)
                    for (d, c), (les, _) in zip(lesions, masks):
                        rows.append({"slab": path.name, "noise": level, "method": name, "diameter_mm": d,
                                     "contrast": round(c / peak, 3),
                                     "kept": fidelity.paired_contrast_kept(den, den_plain, les, c), "psnr_fg": p})
            print(f"slab {k + 1}/{len(slabs)} done", flush=True)
    rows += reused
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["Lesion contrast kept (1 = all) on the held-out T1's three slabs, nine spherical lesions per slab "
             f"(`python scripts/lesion_probe.py {' '.join(args.models)}`); fg PSNR with the lesions in the clean reference.", ""]
    sizes = " | ".join(f"{d:g} mm {c:.0%}" for d in SIZES_MM for c in CONTRASTS)
    lines += [f"| noise | method | fg PSNR (dB) | {sizes} |", "|---|---|---|" + "---|" * (len(SIZES_MM) * len(CONTRASTS))]
    for level in levels:
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
