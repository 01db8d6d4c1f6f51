"""Held-out T1 (three 16-slice slabs, Rician 5/9%, fg PSNR): a 2D model along each plane and averaged.

    python scripts/planes_check.py MODEL_OR_CHECKPOINT

Prints axial / coronal / sagittal / axial+coronal / axial+sagittal / all three (one noise realisation
per slab, seeded; the numbers for the mr-2d variants tried are in scripts/train_all.sh's header).
"""
import sys
from pathlib import Path

import numpy as np
import torch

from denoise.bench_cases import T1_SLABS  # the held-out T1's slabs
from denoise.infer import denoise_array, load_model
from denoise.io import read_scan
from denoise.metrics import foreground_mask, psnr
from denoise.noise import add_noise
from denoise.normalize import reference_intensity

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)
den = load_model(sys.argv[1], device="cpu")
t1 = read_scan(ROOT.parent / "shared" / "data" / "nifti" / "mr_t1_electrodes_seg3d.nii.gz")
width = int(sys.argv[2]) if len(sys.argv) > 2 else 16
for level in ["0.05", "0.09"]:
    r = []
    for s in T1_SLABS:
        clean = t1.array[s:s + width]
        rng_ = reference_intensity(clean)
        m = foreground_mask(clean)
        noisy = add_noise(clean, f"rician:{level}", seed=s)
        # every view is scaled by the same robust percentile (the same voxels, reordered)
        a = denoise_array(noisy, den)
        c = denoise_array(noisy.transpose(1, 0, 2), den).transpose(1, 0, 2)
        sg = denoise_array(noisy.transpose(2, 1, 0), den).transpose(2, 1, 0)
        vals = [psnr(clean, v, data_range=rng_, mask=m) for v in (a, c, sg, (a + c) / 2, (a + sg) / 2, (a + c + sg) / 3)]
        r.append(vals)
        print(level, s, " ".join(f"{v:.2f}" for v in vals), flush=True)
    print(level, "mean axial/cor/sag/a+c/a+s/all3:", " ".join(f"{v:.2f}" for v in np.mean(r, 0)))
