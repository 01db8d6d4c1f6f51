"""Regenerate sample_data/ from ../shared/data (licence-clear files only) and synthetic phantoms.

    python scripts/make_sample_data.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from denoise.io import read_scan, write_scan
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]


def phantom_3d(n: int = 48) -> np.ndarray:
    """A 3D head-like phantom: nested ellipsoids with a few inserts (MR-like intensities 0..1000)."""
    z, y, x = np.mgrid[-1:1:n * 1j, -1:1:n * 1j, -1:1:n * 1j]
    vol = np.zeros((n, n, n), np.float32)
    def ell(cz, cy, cx, rz, ry, rx):
        return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
    vol[ell(0, 0, 0, 0.8, 0.9, 0.7)] = 800
    vol[ell(0, 0, 0, 0.7, 0.8, 0.6)] = 400
    vol[ell(0.1, 0.2, -0.25, 0.2, 0.25, 0.15)] = 600
    vol[ell(-0.2, -0.2, 0.2, 0.15, 0.2, 0.2)] = 1000
    vol[ell(0.3, -0.3, -0.1, 0.08, 0.08, 0.08)] = 200
    return vol


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = p.parse_args(argv)
    out = args.out
    out.mkdir(exist_ok=True)
    # Real MR (MIT): a 24-slice axial slab of the Seg3D T1 (held out from training).
    t1 = read_scan(args.data / "nifti" / "mr_t1_electrodes_seg3d.nii.gz")
    slab = t1.slab(t1.array.shape[0] // 2 - 12, 24)
    write_scan(Scan(slab.array, slab.spacing, slab.affine, "MR", {"nifti_header": t1.meta["nifti_header"]}),
               out / "mr_t1_brain_slab.nii.gz")
    # Real CT (BSD-3): the GE colonography DICOM slices, copied byte for byte.
    ct_dst = out / "ct_abdomen_dicom"
    shutil.rmtree(ct_dst, ignore_errors=True)
    shutil.copytree(args.data / "dicom" / "ge_ct_colonography_3slices", ct_dst)
    # Real MR DICOM (BSD-2): 12 central slices of the Canon b=0 EPI.
    mr_dst = out / "mr_dwi_b0_dicom"
    shutil.rmtree(mr_dst, ignore_errors=True)
    mr_dst.mkdir()
    for f in sorted((args.data / "dicom" / "canon_mr_dwi_b0").glob("*.dcm"))[14:26]:
        shutil.copy(f, mr_dst / f.name)
    # Phantoms (generated here, public domain): 2D Shepp-Logan NIfTI, 3D ellipsoids as a DICOM series.
    sl = resize(shepp_logan_phantom(), (128, 128), anti_aliasing=True).astype(np.float32) * 1000
    write_scan(Scan(sl, (1.0, 1.0), np.eye(4), "MR", {}), out / "phantom_shepp_logan_2d.nii.gz")
    ph_dst = out / "phantom_3d_dicom"
    shutil.rmtree(ph_dst, ignore_errors=True)
    write_scan(Scan(phantom_3d(), (2.0, 2.0, 2.0), np.diag([2.0, 2.0, 2.0, 1.0]), "MR",
                    {"series_label": "3D ellipsoid phantom"}), ph_dst, description="synthetic phantom")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
