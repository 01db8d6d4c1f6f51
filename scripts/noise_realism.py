"""How real is each noise model? Real scans' noise beside every simulated kind (issue #28, item 2).

    python scripts/noise_realism.py [--data ../shared/data] [--out docs/benchmarks/noise_realism.md]

Real: the repeated acquisitions (noise = the difference of two still repeats / sqrt 2, foreground)
and clinical single scans with a background that was not zeroed (chi degrees of freedom and lag-1
correlation of the background). Simulated: each kind at 3% on the clean SPM152 T1 template (noise =
noisy - clean; background = the template's zero background). Measures: `denoise.realnoise.noise_profile`.
Takes ~1 minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from denoise.io import discover_scans, read_scan
from denoise.metrics import foreground_mask
from denoise.noise import add_noise
from denoise.realnoise import consistent_repeats, noise_profile

ROOT = Path(__file__).resolve().parents[1]
REPEATS = ["dicom/ge_mr_epi_fmri", "nifti/mr_bold_4d_siemens_prisma_stc.nii.gz", "nifti/mr_epi_4d_nibabel.nii.gz"]
SINGLES = ["nifti/mr_t1_mprage_child_siemens_sag_anon.nii.gz", "nifti/mr_t2_tse_siemens_adi.nii.gz",
           "nifti/mr_t1_memprage_siemens_adi.nii.gz", "dicom/ge_mr_pd_fse_papaya", "dicom/siemens_mr_cardiac_3d_ir_tfl_slab12",
           "nifti/mr_t1gd_tumour_pyradiomics_2.nii.gz"]
KINDS = ["rician:0.03", "mrkspace:0.03", "mrkspace:0.03,zf=2", "mrkspace:0.03,zf=2,filter=hamming",
         "mrkspace:0.03,pf=0.75", "mrkspace:0.03,filter=fermi", "mrkspace:0.03,coils=8", "mrkspace:0.03,coils=32",
         "mrkspace:0.03,coils=16,accel=2,combine=adaptive", "mrkspace:0.03,coils=16,accel=2"]


def _load(data: Path, rel: str):
    return read_scan(data / rel) if rel.endswith(".gz") else discover_scans(data / rel)[0][0].load()


def _row(name: str, p: dict, extra: str = "") -> str:
    def f(v):
        return "-" if np.isnan(v) else f"{v:.2f}"
    return f"| {name} | {f(p['lag1_x'])} | {f(p['lag1_y'])} | {f(p['bg_dof'])} | {f(p['bg_lag1'])} | {extra} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "noise_realism.md")
    args = ap.parse_args(argv)
    lines = ["| scan or kind | lag-1 corr. x (fg) | lag-1 corr. y (fg) | background chi dof | background lag-1 x | note |",
             "|---|---|---|---|---|---|"]
    for rel in REPEATS:
        scan = _load(args.data, rel)
        a = scan.array.astype(np.float64)
        keep = consistent_repeats(a, foreground_mask(a.mean(0)))
        diff = (a[keep[1]] - a[keep[0]]) / np.sqrt(2)
        peak = np.percentile(a[keep[0]], 99.5)
        lines.append(_row(f"real repeats: {rel}", noise_profile(a[keep[0]], noise=diff),
                          f"repeats {keep[0]},{keep[1]}; noise {np.std(diff[foreground_mask(a[keep[0]])]) / peak * 100:.1f}% of p99.5"))
    for rel in SINGLES:
        scan = _load(args.data, rel)
        lines.append(_row(f"real single: {rel}", noise_profile(scan.array), "background only"))
    clean = read_scan(args.data / "nifti" / "mr_t1_template_spm152_niivue.nii.gz").array.astype(np.float64)
    clean = clean[clean.shape[0] // 2 - 8: clean.shape[0] // 2 + 8]
    for kind in KINDS:
        noisy = add_noise(clean, kind, seed=0)
        lines.append(_row(f"simulated: `{kind}`", noise_profile(noisy, noise=noisy - clean)))
    text = ("Noise of real scans beside the simulated kinds (`python scripts/noise_realism.py`). Lag-1 correlation: "
            "between neighbouring pixels of the noise (a repeat difference, or noisy - clean) inside the foreground; "
            "white noise 0. Background chi degrees of freedom: 2 = Rician (one coil or adaptive combination), 2N = an "
            "N-coil sum of squares (fitted to the background magnitudes' mean and variance; '-' = zeroed background). "
            "The x/y axes are the array's last two (columns, rows).\n\n" + "\n".join(lines) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
