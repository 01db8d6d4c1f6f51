"""How much models change nearly noise-free scans (a denoiser should change them little, and add nothing).

    python scripts/clean_input_check.py [MODEL_OR_CHECKPOINT[:tta] ...] [--odd] [--out FILE.md]   # default: mr-2d mr-3d

``NAME:tta`` runs the model with `denoise run --tta`; ``--odd`` adds each scan cropped by one row
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

import numpy as np

from denoise.fidelity import periodic_pattern
from denoise.infer import LearnedDenoiser, denoise_scan, load_model
from denoise.io import read_scan
from denoise.noise_level import wavelet_sigma
from denoise.normalize import reference_intensity
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SHEPP = ROOT / "sample_data" / "phantom_shepp_logan_2d.nii.gz"  # noise-free samples (the model cards use them)
PHANTOM_3D = ROOT / "sample_data" / "phantom_3d_dicom"
CASES = {
    "Philips T1 TSE phantom": DATA / "dicom" / "philips_phantom_mr_t1_tse_ai_off_enhanced",
    "Siemens cardiac 3D slab": DATA / "dicom" / "siemens_mr_cardiac_3d_ir_tfl_slab12",
    "GE EPI": DATA / "dicom" / "ge_mr_epi_fmri",
    "GE PD FSE 1.5T": DATA / "dicom" / "ge_mr_pd_fse_papaya",
    "Canon DWI b0 (sample)": ROOT / "sample_data" / "mr_dwi_b0_dicom",
    "T1 slab (sample, held out)": ROOT / "sample_data" / "mr_t1_brain_slab.nii.gz",
    "Siemens T2 TSE (ADI, held out)": DATA / "nifti" / "mr_t2_tse_siemens_adi.nii.gz",
    "MS patient 12 FLAIR (held out)": DATA / "nifti" / "mr_ms_patient12_flair.nii.gz",
    "T1 post-contrast (tumour 2, held out)": DATA / "nifti" / "mr_t1gd_tumour_pyradiomics_2.nii.gz",
    "Shepp-Logan (noise-free)": SHEPP,
    "3D phantom (noise-free)": PHANTOM_3D,
}


def change(model: LearnedDenoiser, scan: Scan) -> tuple[float, float, float, float]:
    """(noise estimate before, noise estimate after, RMS change), each in % of the scan's robust
    maximum, and the periodic pattern after / before."""
    out = denoise_scan(scan, model).array
    ref = reference_intensity(scan.array) / 100
    pattern = periodic_pattern(out) / max(periodic_pattern(scan.array), 1e-12)
    return (wavelet_sigma(scan.array) / ref, wavelet_sigma(out) / ref, float(np.sqrt(np.mean((out - scan.array) ** 2)) / ref),
            pattern)


def central(scan: Scan, n: int = 24) -> Scan:
    """The ``n`` central slices of a volume (2D scans unchanged)."""
    if scan.array.ndim == 2 or scan.array.shape[0] <= n:
        return scan
    z = (scan.array.shape[0] - n) // 2
    return Scan(scan.array[z : z + n].copy(), scan.spacing, scan.affine, scan.modality)


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
        model = load_model(m.removesuffix(":tta"), device="cpu").variant(tta=m.endswith(":tta"))
        for name, scan in scans.items():
            if model.spatial_dims == 3 and scan.array.ndim == 2:
                continue
            before, after, rms, pattern = change(model, scan)
            lines.append(f"| {m} | {name} | {before:.3f} -> {after:.3f} | {rms:.2f} | {pattern:.2f} |")
            print(lines[-1], flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
