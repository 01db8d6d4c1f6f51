"""`denoise adapt` measured (issue #27 section 4): real repeats and synthetic out-of-domain checks.

    python scripts/adapt_benchmark.py [--data ../shared/data] [--out docs/benchmarks/adapt] [--minutes 2]
                                      [--single-minutes 1] [--synthetic-minutes 2] [--only real|synthetic]

Real: the three EPI repeat series of ../shared/data (GE fMRI DICOM, Siemens Prisma BOLD, nibabel EPI)
copied into a temporary folder; `denoise.bench_adapt.adapt_real_benchmark` scores noisy, mr-2d, BM3D
(sigma estimated), Noise2Noise adapted on the other two series, and single-scan adapted on the
scored repeat alone (R2R, blind spot of radius 0 and 1, SURE gains). Synthetic: the Siemens cardiac slab with
Rician 5% and the central 16 slices of the Philips CT chest at 25% dose (`lowdose:0.25`), each
adapted (R2R, blind spot, SURE gains; on the slab also R2R and SURE told the true level) on its noisy self
(`adapt_synthetic_check`). Writes
OUT/real/results.{csv,md} and OUT/synthetic/results.{csv,md}; `--only n2n --minutes 8 --patience 100`
the longer Noise2Noise runs of OUT/n2n_long (~25 min). ~42 minutes on 2 cores with the
defaults (real ~24, synthetic ~18; each adaptation is time-boxed).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from denoise.bench_adapt import adapt_real_benchmark, adapt_synthetic_check
from denoise.io import read_scan
from denoise.noise import add_noise
from denoise.normalize import reference_intensity
from denoise.scan import Scan

REAL = ["dicom/ge_mr_epi_fmri", "nifti/mr_bold_4d_siemens_prisma_stc.nii.gz", "nifti/mr_epi_4d_nibabel.nii.gz"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/adapt"))
    ap.add_argument("--minutes", type=float, default=2.0, help="budget of each Noise2Noise adaptation (real noise)")
    ap.add_argument("--single-minutes", type=float, default=1.0, help="budget of each single-scan adaptation (real noise)")
    ap.add_argument("--synthetic-minutes", type=float, default=2.0, help="budget of each synthetic adaptation")
    ap.add_argument("--only", choices=["real", "synthetic", "n2n"],
                    help="n2n: only the Noise2Noise rows (with noisy, mr-2d, BM3D), into OUT/n2n_long")
    ap.add_argument("--patience", type=int, default=6, help="Noise2Noise early stop (validations without gain)")
    args = ap.parse_args()
    if args.only == "n2n":
        with tempfile.TemporaryDirectory() as tmp:
            _copy_real(args.data, Path(tmp))
            print(adapt_real_benchmark(tmp, args.out / "n2n_long", minutes=args.minutes, single=False,
                                       patience=args.patience).read_text())
        return
    if args.only != "synthetic":
        with tempfile.TemporaryDirectory() as tmp:
            _copy_real(args.data, Path(tmp))
            print(adapt_real_benchmark(tmp, args.out / "real", minutes=args.minutes,
                                       single_minutes=args.single_minutes).read_text())
    if args.only != "real":
        cardiac = read_scan(args.data / "dicom" / "siemens_mr_cardiac_3d_ir_tfl_slab12")
        chest = read_scan(args.data / "nifti" / "ct_chest_philips_fnndsc.nii.gz")
        z = chest.array.shape[0] // 2
        chest = Scan(chest.array[z - 8 : z + 8], chest.spacing, affine=chest.affine, modality="CT")
        cases = [("siemens cardiac slab + rician:0.05", cardiac, add_noise(cardiac, "rician:0.05", seed=1),
                  0.05 * reference_intensity(cardiac.array)),  # the level rician:0.05 means
                 ("philips CT chest (16 slices) + lowdose:0.25", chest, add_noise(chest, "lowdose:0.25", seed=1), None)]
        print(adapt_synthetic_check(cases, args.out / "synthetic", minutes=args.synthetic_minutes).read_text())


def _copy_real(data: Path, dest: Path) -> None:
    for rel in REAL:  # copies: symlinked folders are not walked
        src = data / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / src.name)


if __name__ == "__main__":
    main()
