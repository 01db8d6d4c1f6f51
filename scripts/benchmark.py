"""Regenerate the quality benchmark (docs/benchmarks/) on scans no shipped model was trained on.

    python scripts/benchmark.py [--data ../shared/data] [--quick] [--only mr|mr3d|ct|other] [--reuse-classical]

MR: three 16-slice axial slabs of the held-out Seg3D T1 (nifti/mr_t1_electrodes_seg3d), Rician
1/3/5/7/9% (and BM3D vs BM4D vs mr-3d at 5/9% in docs/benchmarks/mr3d). Blind rows (noise level
estimated, as `denoise run` does) and oracle rows (the true added noise level given) side by side. CT: the held-out GE colonography slices (dicom/ge_ct_colonography_3slices; real noise
~18 HU, so an approximate reference), low dose 50/25/10%. Other scanners (docs/benchmarks/other):
the MR models on real series from vendors, anatomy and pixel sizes unlike their training data
(Siemens cardiac 3D slab, Canon DWI b0, GE EPI: nearly noise-free, 0.1-0.8% by the wavelet
estimate), Rician 5/9%. CT it never saw from another scanner model and anatomy (docs/benchmarks/ctother): three 4-slice slabs
of the held-out Philips 4D-CT thorax at 25% dose. Writes docs/benchmarks/{mr,mr3d,ct,ctother,other}/.
The cases themselves: `denoise.bench_cases`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from denoise.bench import run_benchmark
from denoise.bench_cases import OTHER_MR, T1_SLABS, copy_ge_ct, copy_other_mr, write_t1_slabs, write_thorax
from denoise.models import bm3d_available

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--quick", action="store_true", help="one slab, two levels (smoke run)")
    p.add_argument("--only", choices=["mr", "mr3d", "ct", "ctother", "other"], help="run one part (they can run side by side)")
    p.add_argument("--reuse-classical", action="store_true",
                   help="copy classical rows from the existing results.csv where the noisy input is identical "
                        "(after retraining a model: only the learned rows and the figures' cases are recomputed)")
    args = p.parse_args(argv)
    bm3d = ["bm3d", "bm3d:oracle"] if bm3d_available() else []
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "mr", "mr3d"):
            _mr(args, tmp, bm3d)
        if args.only in (None, "ct"):
            _ct(args, tmp, bm3d)
        if args.only in (None, "ctother"):
            _ct_other(args, tmp, bm3d)
        if args.only in (None, "other"):
            _other(args, tmp, bm3d)
    return 0


def _mr(args, tmp: str, bm3d: list[str]) -> None:
    mr_dir = write_t1_slabs(args.data, Path(tmp) / "mr", T1_SLABS[: 1 if args.quick else 3])
    levels = ["rician:0.03", "rician:0.09"] if args.quick else [f"rician:0.0{i}" for i in (1, 3, 5, 7, 9)]
    # blind rows (what `denoise run` does) and oracle rows (true noise level given) for BM3D and
    # mr-2d; mr-2d:tta is the 4-flip self-ensemble (`denoise run --tta`)
    mr_methods = ["noisy", "gaussian:oracle", "nlm", "nlm:oracle", "tv:oracle", "wavelet:oracle", *bm3d,
                  "dae:mr-2d", "dae:mr-2d:noisescale1", "dae:mr-2d:oracle", "dae:mr-2d:tta", "dae:mr-3d", "dae:mr-3d:tta", "dae:mr-3d:1plane", "vae:vae-mr-2d",
                  "sparse:sparse-mr-2d"]
    if args.only != "mr3d":
        run_benchmark(mr_dir, levels, args.out / "mr", methods=mr_methods, seed=0, reuse=_reuse(args, "mr"))
    if bm3d and not args.quick and args.only != "mr":
        # BM4D takes 1-2 min per slab: the 3D methods at the target levels only (same cases and
        # noise realisations as the main table, where mr-2d is)
        run_benchmark(mr_dir, ["rician:0.05", "rician:0.09"], args.out / "mr3d", seed=0,
                      methods=["noisy", "bm3d:oracle", "bm4d:oracle", "dae:mr-3d", "dae:mr-3d:noisescale1", "dae:mr-3d:1plane"],
                      reuse=_reuse(args, "mr3d"))


def _ct(args, tmp: str, bm3d: list[str]) -> None:
    ct_dir = copy_ge_ct(args.data, Path(tmp) / "ct")
    doses = ["lowdose:0.25"] if args.quick else ["lowdose:0.5", "lowdose:0.25", "lowdose:0.1"]
    ct_methods = ["noisy", "gaussian:oracle", "nlm", "nlm:oracle", "tv:oracle", "wavelet:oracle", *bm3d,
                  "dae:ct-2d", "dae:ct-2d:oracle", "dae:ct-2d:tta", "dae:ct-2d:oracle+tta"]
    run_benchmark(ct_dir, doses, args.out / "ct", methods=ct_methods, seed=0, reuse=_reuse(args, "ct"))


def _ct_other(args, tmp: str, bm3d: list[str]) -> None:
    """ct-2d on CT it never saw, another patient, scanner model and anatomy than the GE abdomen: three
    4-slice slabs of the Philips 4D-CT thorax at 25% dose (issue #31: above BM3D with estimated sigma)."""
    ct_dir = write_thorax(args.data, Path(tmp) / "ctother")
    run_benchmark(ct_dir, ["lowdose:0.25"], args.out / "ctother", methods=["noisy", *bm3d, "dae:ct-2d"], seed=0,
                  reuse=_reuse(args, "ctother"))


def _other(args, tmp: str, bm3d: list[str]) -> None:
    other = copy_other_mr(args.data, Path(tmp) / "other", OTHER_MR[: 1 if args.quick else None])
    methods = ["noisy", "nlm", *bm3d, "dae:mr-2d", "dae:mr-2d:tta", "dae:mr-3d", "dae:mr-3d:tta"]
    run_benchmark(other, ["rician:0.05", "rician:0.09"], args.out / "other", methods=methods, seed=0,
                  reuse=_reuse(args, "other"))


def _reuse(args, part: str) -> Path | None:
    return args.out / part / "results.csv" if args.reuse_classical else None


if __name__ == "__main__":
    sys.exit(main())
