"""Does a model sharpen real EPI? (issue #28: mr-2d loses on real EPI repeats even when told little noise.)

    python scripts/sharpening_check.py [MODEL_OR_CHECKPOINT ...] [--sigma S] [--out FILE.md]   # default: mr-2d, S = 0.003

For the three EPI repeat series of ../shared/data (copied to a temporary folder, as
`denoise bench --real` reads them), the first still repeat is denoised with the model told the noise
level S (normalised scale; `LearnedDenoiser.variant(sigma=S)`, below these series' noise of ~1% of
the range) and the change (output - input, % of the repeats' robust maximum) is compared, in the
foreground of the repeats' mean (`denoise.bench_real.still_repeats`), with the negative Laplacian of
that mean (Gaussian 0.7 pixels first, per slice): a correlation near +1 means the change is unsharp
masking (the model sharpens), near -1 that it blurs, near 0 neither. A denoiser trained on sharp
anatomy pushes blurred images towards sharp ones (its output is the input plus sigma^2 times the
score of its training images), which real EPI, blurred by its coarse matrix, then pays for.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from denoise.bench_real import repeat_sets, still_repeats
from denoise.infer import denoise_scan, load_model
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EPI = ["dicom/ge_mr_epi_fmri", "nifti/mr_bold_4d_siemens_prisma_stc.nii.gz", "nifti/mr_epi_4d_nibabel.nii.gz"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["mr-2d"], help="shipped model names or checkpoints")
    ap.add_argument("--sigma", type=float, default=0.003, help="noise level told (normalised scale)")
    ap.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = ap.parse_args(argv)
    models, sigma = args.models, args.sigma
    lines = [f"Change of the first still EPI repeat told noise level {sigma:g} (`python scripts/sharpening_check.py "
             f"{' '.join(models)} --sigma {sigma:g}`): RMS and mean (% of the robust maximum), and its correlation "
             "with the negative Laplacian of the repeats' mean (+: sharpens, -: blurs)", "",
             "| model | series | RMS change | mean change | corr(change, -Laplacian) |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for rel in EPI:
            src = DATA / rel
            (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(tmp) / src.name)
        sets = repeat_sets(tmp)
        for spec in models:
            model = load_model(spec).variant(sigma=sigma)
            for name, scan in sets:
                keep, repeats, mask, peak = still_repeats(scan.array)
                one = Scan(scan.array[keep[0]], scan.spacing[-3:], affine=scan.affine, modality=scan.modality)
                change = (denoise_scan(one, model).array - one.array) / peak
                mean = repeats.mean(axis=0) / peak
                lap = -np.stack([ndimage.laplace(ndimage.gaussian_filter(s, 0.7)) for s in mean])
                corr = float(np.corrcoef(change[mask], lap[mask])[0, 1])
                lines.append(f"| {spec} | {name.split('/')[0]} | {100 * np.sqrt(np.mean(change[mask] ** 2)):.3f}% | "
                             f"{100 * change[mask].mean():+.3f}% | {corr:+.3f} |")
                print(lines[-1], flush=True)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
