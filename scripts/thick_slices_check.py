"""Three planes vs slab network vs mr-2d on the held-out T1 made anisotropic (slices averaged in
groups of F: F mm slices), Rician 5/9%, fg PSNR; the evidence for ISOTROPIC_RATIO (docs/design.md).

    python scripts/thick_slices_check.py 1 2 3
"""
import sys
from pathlib import Path

import numpy as np
import torch

from denoise.bench_cases import T1_SLABS  # the held-out T1's slabs
from denoise.infer import denoise_scan, load_model
from denoise.io import read_scan
from denoise.metrics import foreground_mask, psnr
from denoise.noise import add_noise
from denoise.normalize import reference_intensity
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)
t1 = read_scan(ROOT.parent / "shared" / "data" / "nifti" / "mr_t1_electrodes_seg3d.nii.gz")
m2, three, slab = load_model("mr-2d", device="cpu"), load_model("mr-2d", device="cpu", planes=3), load_model("mr-3d", device="cpu", planes=1)
for f in [int(a) for a in sys.argv[1:]]:
    for level in ["0.05", "0.09"]:
        r = []
        for s in T1_SLABS:
            block = t1.array[s - 16 * f // 2 + 8: s - 16 * f // 2 + 8 + 16 * f]
            clean_a = block.reshape(16, f, *block.shape[1:]).mean(1)
            sp = (t1.spacing[0] * f, *t1.spacing[1:])
            clean = Scan(clean_a, sp, modality="MR")
            rng_ = reference_intensity(clean_a)
            m = foreground_mask(clean_a)
            noisy = add_noise(clean, f"rician:{level}", seed=s)
            # three planes forced: spacing passed as isotropic so plan() takes all three axes
            outs = [denoise_scan(noisy, m2).array, denoise_scan(Scan(noisy.array, (1, 1, 1), modality="MR"), three).array,
                    denoise_scan(noisy, slab).array]
            r.append([psnr(clean_a, o, data_range=rng_, mask=m) for o in outs])
        print(f"slices x{f} rician {level}: mr-2d / 3 planes / slab", " ".join(f"{v:.2f}" for v in np.mean(r, 0)), flush=True)
