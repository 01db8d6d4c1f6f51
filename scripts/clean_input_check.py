"""How much models change nearly noise-free scans (a denoiser should change them little, and add nothing).

    python scripts/clean_input_check.py [MODEL_OR_CHECKPOINT[@F][:tta] ...] [--odd] [--out FILE.md]   # default: mr-2d mr-3d

``NAME:tta`` runs the model with `denoise run --tta`, ``NAME@F`` with `denoise run --noise-scale F`,
``NAME:network`` without the no-added-structure guard (`denoise.guard`: the network alone); ``--odd`` adds each scan cropped by one row
and one column (odd in-plane sizes, where a flip keeps every pixel's sub-pixel phase).

For each real high-SNR series in ../shared/data and the noise-free sample phantoms: the wavelet
noise estimate (`denoise.noise_level.wavelet_sigma`: mean over up to 16 slices) before -> after, and the RMS change, both in % of the
scan's robust maximum (99.5th percentile), and the 2-pixel periodic pattern of the output
relative to the input's (`denoise.fidelity.periodic_pattern`; > 1: the model added a grid). Volumes
are cut to their 24 central slices. 3D models skip 2D inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from denoise.bench_cases import central, clean_cases, clean_change
from denoise.infer import load_model
from denoise.io import read_scan
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]
CASES = clean_cases(ROOT.parent / "shared" / "data", ROOT / "sample_data")


def main(args: list[str]) -> int:
    out = None
    if "--out" in args:
        i = args.index("--out")
        out, args = Path(args[i + 1]), args[:i] + args[i + 2:]
    models = [a for a in args if a != "--odd"] or ["mr-2d", "mr-3d"]
    lines = []
    scans = {name: central(read_scan(path)) for name, path in CASES.items() if path.exists()}
    if "--odd" in args:
        for name, s in list(scans.items()):
            a = s.array[..., 1:, 1:].copy()
            scans[f"{name}, {'x'.join(map(str, a.shape[-2:]))}"] = Scan(a, s.spacing, s.affine, s.modality)
    lines += ["| model | scan | noise estimate before -> after (% of max) | RMS change (% of max) | periodic pattern after / before |",
              "|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for m in models:
        base, *flags = m.split(":")
        name, _, scale = base.partition("@")
        model = load_model(name, device="cpu", **({"noise_scale": float(scale)} if scale else {}))
        model = model.variant(tta="tta" in flags)
        for case, scan in scans.items():
            if model.spatial_dims == 3 and scan.array.ndim == 2:
                continue
            before, after, rms, pattern = clean_change(model, scan, guard="network" not in flags)
            lines.append(f"| {m} | {case} | {before:.3f} -> {after:.3f} | {rms:.2f} | {pattern:.2f} |")
            print(lines[-1], flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
