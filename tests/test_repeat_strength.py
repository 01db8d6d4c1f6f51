"""A 4D series' own repeats choose the strength (`denoise.repeat_strength`): the choice minimises
the error against the hidden noise-free image, it only ever lowers the strength, and `denoise run`
reports it (and keeps the asked strength with --full-strength)."""

import csv

import nibabel as nib
import numpy as np
import pytest

from denoise.cli import main
from denoise.infer import denoise_array
from denoise.metrics import foreground_mask
from denoise.models import ClassicalDenoiser
from denoise.repeat_strength import repeat_strength


def _anatomy(shape=(6, 48, 48), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    head = (y**2 + x**2 < 0.8).astype(np.float64) * (100 + 20 * np.sin(6 * y) * np.cos(5 * x))
    return head + (head > 0) * rng.normal(0, 3, shape)  # fine texture: structure a denoiser can erase


def _series(truth: np.ndarray, t: int, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return truth[None] + rng.normal(0, sigma, (t, *truth.shape))


def _true_error(series, denoised, truth, s):
    """Mean squared error against the truth over its foreground (the region the repeats are read in)."""
    fg = foreground_mask(truth)
    return float(np.mean((series + s * (denoised - series) - truth[None])[:, fg] ** 2))


@pytest.mark.parametrize("harm", [0.0, 0.5, 1.5, 4.0])
def test_chosen_strength_is_the_best_against_the_hidden_truth(harm):
    """A 'denoiser' that removes the noise but adds its own structure of a given size: the strength
    the repeats choose is (within a grid step) the one that minimises the true error."""
    truth = _anatomy()
    x = _series(truth, 4, sigma=5.0)
    distortion = harm * 5.0 * np.random.default_rng(7).normal(size=truth.shape) * (truth > 0)
    f = np.broadcast_to(truth + distortion, x.shape)
    s = repeat_strength(x, f)
    grid = np.linspace(0, 1, 101)
    best = grid[np.argmin([_true_error(x, f, truth, g) for g in grid])]
    assert s is not None and abs(s - best) < 0.06, (s, best)
    # as good as the best grid point, up to 1% of the input's own error (noise variance 25)
    assert _true_error(x, f, truth, s) <= _true_error(x, f, truth, best) + 0.25


def test_never_raises_the_strength_and_reads_a_helpful_denoiser_as_full():
    truth = _anatomy()
    x = _series(truth, 3, sigma=5.0)
    assert repeat_strength(x, np.broadcast_to(truth, x.shape)) == pytest.approx(1.0, abs=0.03)
    overshoot = x + 3.0 * (truth[None] - x)  # past the truth: the blend's best is 1/3, capped at 1 anyway
    assert 0.0 <= repeat_strength(x, overshoot) <= 1.0


def test_nothing_to_calibrate():
    truth = _anatomy()
    x = _series(truth, 3, sigma=5.0)
    assert repeat_strength(x[:1], x[:1] * 0.5) is None  # one time point
    assert repeat_strength(x, x.copy()) is None  # an unchanged series
    with pytest.raises(ValueError, match="differ in shape"):
        repeat_strength(x, x[:2])


def test_a_moved_time_point_does_not_decide():
    """A time point that moved is left out (`consistent_repeats`): the choice stays where the still
    repeats put it."""
    truth = _anatomy()
    x = _series(truth, 5, sigma=5.0)
    distortion = 5.0 * np.random.default_rng(7).normal(size=truth.shape) * (truth > 0)
    f = np.broadcast_to(truth + distortion, x.shape).copy()
    still = repeat_strength(x, f)
    moved = x.copy()
    moved[2] = np.roll(moved[2], 6, axis=-1)
    f[2] = np.roll(f[2], 6, axis=-1)
    assert repeat_strength(moved, f) == pytest.approx(still, abs=0.05)


def test_denoise_array_calibrates_4d_series_only():
    """An oversmoothing filter on a 4D series: the calibrated output is closer to the hidden truth
    than the filter's own; a 3D volume and calibrate=False are left at the asked strength."""
    truth = _anatomy((8, 48, 48))
    x = _series(truth, 3, sigma=2.0).astype(np.float32)
    blur = ClassicalDenoiser("gaussian", sigma=0.5)  # far more smoothing than 2% noise needs
    details: dict = {}
    calibrated = denoise_array(x, blur, details=details)
    full = denoise_array(x, blur, calibrate=False)
    s = details["repeat_strength"]
    assert 0.0 <= s < 0.9
    np.testing.assert_allclose(calibrated, x + s * (full - x), rtol=1e-5, atol=1e-3)
    fg = foreground_mask(truth)
    err = lambda a: float(np.mean((a - truth[None])[:, fg] ** 2))  # noqa: E731
    assert err(calibrated) < err(full) and err(calibrated) <= err(x)
    one: dict = {}
    np.testing.assert_allclose(denoise_array(x[0], blur, details=one), full[0], atol=1e-3)  # full strength
    assert one.get("repeat_strength") is None


def _manifest(out):
    with open(out / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_reports_the_repeat_strength_and_full_strength_keeps_the_asked_one(tmp_path):
    truth = _anatomy((8, 48, 48))
    x = _series(truth, 3, sigma=2.0).astype(np.float32)
    src = tmp_path / "in"
    src.mkdir()
    nib.save(nib.Nifti1Image(np.transpose(x, (3, 2, 1, 0)), np.eye(4)), str(src / "bold_mr.nii.gz"))
    out = tmp_path / "out"
    assert main(["run", "-i", str(src), "-o", str(out), "-m", "gaussian", "--quiet"]) == 0
    row = _manifest(out)[0]
    assert row["status"] == "ok" and 0.0 <= float(row["repeat_strength"]) < 1.0
    calibrated = nib.load(str(out / "bold_mr.nii.gz")).get_fdata()
    # a resumed run with --full-strength is another option set: rerun, full strength, no factor
    assert main(["run", "-i", str(src), "-o", str(out), "-m", "gaussian", "--full-strength", "--continue",
                 "--quiet"]) == 0
    row = _manifest(out)[0]
    assert row["model"].endswith("+fullstrength") and row["repeat_strength"] == ""
    full = nib.load(str(out / "bold_mr.nii.gz")).get_fdata()
    raw = np.transpose(x, (3, 2, 1, 0))
    assert np.mean(np.abs(full - raw)) > np.mean(np.abs(calibrated - raw))  # the full change is larger


@pytest.mark.parametrize("strength", [0.1, 0.5, 1.0])
def test_viewer_slider_on_a_calibrated_output_matches_run(strength):
    """The viewer caches the calibrated full-strength output and blends it with its strength slider
    (`blend_factor`); that must give what `denoise_array(strength=S)` (run --strength S) gives."""
    from denoise.viewer.support import blend_factor

    truth = _anatomy((8, 48, 48))
    x = _series(truth, 3, sigma=2.0).astype(np.float32)
    blur = ClassicalDenoiser("gaussian", sigma=0.5)
    details: dict = {}
    cached = denoise_array(x, blur, details=details)
    viewer = x + np.float32(blend_factor(strength, details["repeat_strength"])) * (cached - x)
    np.testing.assert_allclose(viewer, denoise_array(x, blur, strength=strength), atol=2e-3)
    assert blend_factor(strength, None) == strength  # a full-strength output: the plain blend


def test_a_large_series_reads_fewer_time_points_and_chooses_alike(monkeypatch):
    """Memory: at most MAX_VOXELS voxels of time points are read (never fewer than 2); the choice
    from 2 of 6 repeats stays near the one from all 6."""
    import denoise.repeat_strength as rs

    truth = _anatomy()
    x = _series(truth, 6, sigma=5.0)
    distortion = 5.0 * np.random.default_rng(7).normal(size=truth.shape) * (truth > 0)
    f = np.broadcast_to(truth + distortion, x.shape)
    every = repeat_strength(x, f)
    monkeypatch.setattr(rs, "MAX_VOXELS", truth.size)  # room for one volume: two are read anyway
    assert repeat_strength(x, f) == pytest.approx(every, abs=0.05)


def test_identical_time_points_measure_no_noise_and_keep_the_input():
    """A volume saved twice is no pair of repeats: their difference shows no noise, so any change
    reads as harm and the input comes back (0, written without a sign)."""
    truth = _anatomy()
    x = np.stack([truth, truth]) + np.random.default_rng(3).normal(0, 5, truth.shape)[None]
    s = repeat_strength(x, x + 1.0 * (truth[None] - x))
    assert s == 0.0 and f"{s:.3f}" == "0.000"
