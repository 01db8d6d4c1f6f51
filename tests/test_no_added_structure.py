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
    out = denoise_scan(scan, load_model("mr-2d", device="cpu"), guard=False).array  # the network's own
    assert periodic_pattern(scan.array) < 0.0005 * 1000  # the phantom itself: nothing there
    assert periodic_pattern(out) < 0.002 * 1000


def test_guard_blends_back_slices_that_gained_noise_or_pattern_and_leaves_denoised_ones():
    from denoise.guard import guard_slices

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    smooth = 100 * np.exp(-((yy - 30.0) ** 2 + (xx - 34.0) ** 2) / 400)
    clean = np.stack([smooth] * 4)
    noisy = clean + rng.normal(0, 2.0, clean.shape)
    # a denoiser's output (closer to the clean image): both measures fall, nothing is touched
    out, kept = guard_slices(noisy, 0.2 * noisy + 0.8 * clean)
    assert np.array_equal(out, 0.2 * noisy + 0.8 * clean) and np.all(kept == 1)
    # an output with a checkerboard on two slices and fine noise on another: blended back
    bad = noisy.copy()
    bad[1] += 1.5 * (-1.0) ** (yy + xx)
    bad[3] += rng.normal(0, 3.0, (64, 64))
    out, kept = guard_slices(noisy, bad)
    assert kept[0] == 1 and kept[2] == 1 and kept[1] < 1 and kept[3] < 1
    for i in range(4):
        assert wavelet_sigma(out[i]) <= wavelet_sigma(noisy[i]) * (1 + 1e-6)
        assert periodic_pattern(out[i]) <= periodic_pattern(noisy[i]) * (1 + 1e-6)
        assert np.allclose(out[i], noisy[i] + kept[i] * (bad[i] - noisy[i]))  # a blend with the input, no new content


def test_default_output_of_a_nearly_noise_free_scan_never_exceeds_its_input():
    """Issue #31 item 1 as the default `denoise_scan` delivers it: on a noise-free phantom and a
    clean smooth bump, every slice's noise estimate and 2-pixel pattern stay at most the input's."""
    from denoise.io import read_scan as read

    phantom = read(ROOT / "sample_data" / "phantom_shepp_logan_2d.nii.gz")
    yy, xx = np.mgrid[:96, :96]
    bump = Scan(np.stack([(800 * np.exp(-((yy - 40.0) ** 2 + (xx - 50.0) ** 2) / 900)).astype(np.float32)] * 5),
                (1, 1, 1), np.eye(4), "MR")
    model = load_model("mr-2d", device="cpu")
    for scan in (phantom, bump):
        den = denoise_scan(scan, model)
        a, b = scan.array.reshape(-1, *scan.array.shape[-2:]), den.array.reshape(-1, *scan.array.shape[-2:])
        for x, y in zip(a, b):
            assert wavelet_sigma(y) <= wavelet_sigma(x) * (1 + 1e-5) + 1e-9
            assert periodic_pattern(y) <= periodic_pattern(x) * (1 + 1e-5) + 1e-9
        assert isinstance(den.meta["guarded_slices"], int)
