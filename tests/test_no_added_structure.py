"""The default MR model adds no 2-pixel grid (issue #31, item 1): on a real crop its output has less
periodic-pattern energy and a lower noise estimate than its input; on a clean smooth phantom (where
any pattern is the model's own) it stays below a small fraction of the peak."""

from pathlib import Path

import numpy as np

from denoise import denoise_scan, load_model
from denoise.fidelity import periodic_pattern
from denoise.io import read_scan
from denoise.noise_level import wavelet_sigma
from denoise.scan import Scan

ROOT = Path(__file__).resolve().parents[1]


def test_default_mr_model_on_a_real_crop_adds_no_pattern():
    t1 = read_scan(ROOT / "sample_data" / "mr_t1_brain_slab.nii.gz")  # held out from training
    crop = Scan(t1.array[8:16, 40:168, 20:148].copy(), t1.spacing, t1.affine, "MR")
    out = denoise_scan(crop, load_model("mr-2d", device="cpu")).array
    assert periodic_pattern(out) < periodic_pattern(crop.array)
    assert wavelet_sigma(out) < wavelet_sigma(crop.array)


def test_default_mr_model_on_a_smooth_phantom_keeps_the_pattern_small():
    """A noise-free smooth bump: the input has no 2-pixel pattern; the output's is the model's own.
    The mr-2d shipped before session 33 put 0.24% of the peak there (this bound: 0.2%; its
    successor 0.13%; docs/benchmarks.md, 'No added structure')."""
    yy, xx = np.mgrid[:128, :128]
    smooth = (1000 * np.exp(-((yy - 64.0) ** 2 + (xx - 60.0) ** 2) / 1500)).astype(np.float32)
    scan = Scan(np.stack([smooth] * 5), (1, 1, 1), np.eye(4), "MR")
    out = denoise_scan(scan, load_model("mr-2d", device="cpu")).array
    assert periodic_pattern(scan.array) < 0.0005 * 1000  # the phantom itself: nothing there
    assert periodic_pattern(out) < 0.002 * 1000
