"""The held-out cases the benchmark scripts score (docs/benchmarks.md), in one place.

``data`` is a folder laid out like ../shared/data (see its SOURCES.md): the MR cases are three
16-slice axial slabs of the held-out Seg3D T1 (`T1_SLABS`), the CT cases the held-out GE colonography
slices (and the Philips 4D-CT thorax, `thorax_slabs`), the other scanners' MR series `OTHER_MR`.
None of them is in any shipped model's training files (`denoise.recipes.HELD_OUT`).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from denoise.io import read_scan, write_scan
from denoise.scan import Scan

__all__ = ["T1_SLABS", "OTHER_MR", "THORAX_SLICES", "CLEAN_CASES", "t1_slabs", "write_t1_slabs", "copy_ge_ct",
           "copy_other_mr", "write_thorax", "clean_cases", "clean_change", "central"]

T1_SLABS = [40, 72, 104]  # first slices of the held-out T1's three 16-slice slabs
T1_FILE = "nifti/mr_t1_electrodes_seg3d.nii.gz"
# real MR series from other vendors, anatomy and pixel sizes, none used for training
OTHER_MR = ["siemens_mr_cardiac_3d_ir_tfl_slab12", "canon_mr_dwi_b0", "ge_mr_epi_fmri"]
THORAX_FILE = "nifti/ct_thorax_4dct_philips_itkelastix.nii.gz"
THORAX_SLICES = [(30, 4), (70, 4), (110, 4)]  # (first slice, count): upper chest, mid, lower (liver dome)


def t1_slabs(data: Path, starts: list[int] = T1_SLABS) -> list[Scan]:
    """The held-out T1's 16-slice axial slabs, each with its own affine (its first slice's position)."""
    t1 = read_scan(Path(data) / T1_FILE)
    return [dataclasses.replace(t1.slab(s, 16), modality="MR") for s in starts]


def write_t1_slabs(data: Path, mr_dir: Path, starts: list[int] = T1_SLABS) -> Path:
    """`t1_slabs` as NIfTI files ``t1_slabSSS_mr.nii.gz`` in ``mr_dir`` (the MR cases' folder)."""
    mr_dir.mkdir(parents=True)
    for s, slab in zip(starts, t1_slabs(data, starts)):
        write_scan(slab, mr_dir / f"t1_slab{s:03d}_mr.nii.gz")
    return mr_dir


def copy_ge_ct(data: Path, ct_dir: Path) -> Path:
    """The held-out GE colonography slices (the CT cases) copied into ``ct_dir``."""
    shutil.copytree(Path(data) / "dicom" / "ge_ct_colonography_3slices", ct_dir / "ge_ct")
    return ct_dir


def write_thorax(data: Path, ct_dir: Path, slices: list[tuple[int, int]] = THORAX_SLICES) -> Path:
    """Slabs of the held-out Philips 4D-CT thorax (another patient and scanner model than any CT
    in training) as NIfTI files in ``ct_dir``."""
    ct = read_scan(Path(data) / THORAX_FILE)
    ct_dir.mkdir(parents=True, exist_ok=True)
    for s, n in slices:
        write_scan(dataclasses.replace(ct.slab(s, n), modality="CT"), ct_dir / f"thorax_{s:03d}_ct.nii.gz")
    return ct_dir


def copy_other_mr(data: Path, other: Path, names: list[str] = OTHER_MR) -> Path:
    """The other scanners' MR series (``names`` of OTHER_MR) copied into ``other`` (the cases)."""
    for name in names:
        shutil.copytree(Path(data) / "dicom" / name, other / name)
    return other


# real series with little noise of their own and noise-free phantoms (scripts/clean_input_check.py, the
# model cards): name -> ("data" or "samples", path relative to that folder)
CLEAN_CASES = {
    "Philips T1 TSE phantom": ("data", "dicom/philips_phantom_mr_t1_tse_ai_off_enhanced"),
    "Siemens cardiac 3D slab": ("data", "dicom/siemens_mr_cardiac_3d_ir_tfl_slab12"),
    "GE EPI": ("data", "dicom/ge_mr_epi_fmri"),
    "GE PD FSE 1.5T": ("data", "dicom/ge_mr_pd_fse_papaya"),
    "Canon DWI b0 (sample)": ("samples", "mr_dwi_b0_dicom"),
    "T1 slab (sample, held out)": ("samples", "mr_t1_brain_slab.nii.gz"),
    "Siemens T2 TSE (ADI, held out)": ("data", "nifti/mr_t2_tse_siemens_adi.nii.gz"),
    "MS patient 12 FLAIR (held out)": ("data", "nifti/mr_ms_patient12_flair.nii.gz"),
    "T1 post-contrast (tumour 2, held out)": ("data", "nifti/mr_t1gd_tumour_pyradiomics_2.nii.gz"),
    "Shepp-Logan (noise-free)": ("samples", "phantom_shepp_logan_2d.nii.gz"),
    "3D phantom (noise-free)": ("samples", "phantom_3d_dicom"),
}


def clean_cases(data: Path, samples: Path) -> dict[str, Path]:
    """`CLEAN_CASES` as paths under ``data`` (../shared/data) and ``samples`` (sample_data/)."""
    roots = {"data": Path(data), "samples": Path(samples)}
    return {name: roots[root] / rel for name, (root, rel) in CLEAN_CASES.items()}


def clean_change(model, scan: Scan, *, guard: bool = True) -> tuple[float, float, float, float]:
    """(noise estimate before, noise estimate after, RMS change), each in % of the scan's robust
    maximum, and the periodic pattern after / before, of ``model`` on ``scan`` (``guard=False``: the
    network alone, without `denoise.guard`)."""
    from denoise.fidelity import periodic_pattern
    from denoise.infer import denoise_scan
    from denoise.noise_level import wavelet_sigma
    from denoise.normalize import reference_intensity

    out = denoise_scan(scan, model, guard=guard).array
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
