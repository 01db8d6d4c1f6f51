"""Scoring on real noise (denoise.realnoise): the repeat-based scores equal the true scores on
synthetic repeats of a known image, and the noise statistics match their theory."""

import numpy as np
import pytest
from scipy import ndimage

from denoise.metrics import foreground_mask, psnr, ssim
from denoise.realnoise import (
    chi_dof,
    lag_correlation,
    no_reference_measures,
    repeat_noise_variance,
    repeat_stability,
    score_repeat,
    unbiased_psnr,
    unbiased_ssim,
)


@pytest.fixture
def clean(phantom_2d):
    return np.stack([phantom_2d * (1 + 0.1 * k) for k in range(4)]).astype(np.float64)  # (4, 64, 64)


@pytest.mark.parametrize("k_repeats", [2, 3, 10])
def test_unbiased_psnr_equals_the_true_psnr_on_synthetic_repeats(clean, k_repeats):
    rng = np.random.default_rng(k_repeats)
    sigma, peak = 60.0, float(clean.max())
    repeats = clean[None] + rng.normal(0, sigma, (k_repeats, *clean.shape))
    # a "denoised" repeat 0 with an error of its own (blur + a little noise): its true PSNR is known
    denoised = ndimage.gaussian_filter(repeats[0], (0, 0.8, 0.8)) + rng.normal(0, 5, clean.shape)
    mask = foreground_mask(clean)
    truth = psnr(clean, denoised, data_range=peak, mask=mask)
    est = unbiased_psnr(denoised, repeats, 0, data_range=peak, mask=mask)
    naive = psnr(np.delete(repeats, 0, 0).mean(0), denoised, data_range=peak, mask=mask)
    assert abs(est - truth) < 0.25, (est, truth)
    assert abs(naive - truth) > abs(est - truth)  # the reference's own noise matters: the correction helps
    if k_repeats == 2:
        assert truth - naive > 1.0


def test_unbiased_ssim_is_closer_to_the_truth_than_the_naive_one(clean):
    rng = np.random.default_rng(1)
    peak = float(clean.max())
    repeats = clean[None] + rng.normal(0, 40, (5, *clean.shape))
    denoised = ndimage.gaussian_filter(repeats[0], (0, 1.0, 1.0))
    mask = foreground_mask(clean)
    truth = ssim(clean, denoised, data_range=peak, mask=mask)
    est = unbiased_ssim(denoised, repeats, 0, data_range=peak, mask=mask)
    naive = ssim(np.delete(repeats, 0, 0).mean(0), denoised, data_range=peak, mask=mask)
    assert abs(est - truth) < 0.02 and abs(est - truth) < abs(naive - truth) / 2, (est, truth, naive)


def test_noise_variance_and_stability_from_repeats(clean):
    rng = np.random.default_rng(2)
    repeats = clean[None] + rng.normal(0, 30, (6, *clean.shape))
    assert abs(repeat_noise_variance(repeats) / 900 - 1) < 0.03
    steady = repeat_stability(repeats, foreground_mask(clean))
    drifting = repeats * np.linspace(0.9, 1.1, 6)[:, None, None, None]
    assert repeat_stability(drifting, foreground_mask(clean)) > 10 * steady
    s = score_repeat(repeats[1], repeats, 1, data_range=float(clean.max()))
    assert abs(s["sigma"] / 30 - 1) < 0.03 and np.isfinite(s["psnr"]) and -1 <= s["ssim"] <= 1


def test_lag_correlation_of_white_and_smoothed_noise():
    rng = np.random.default_rng(3)
    white = rng.normal(size=(200, 200))
    assert abs(lag_correlation(white)) < 0.02
    pair_mean = (white[:, :-1] + white[:, 1:]) / 2  # theory: neighbours share one of two terms -> 0.5
    assert abs(lag_correlation(pair_mean, axis=-1) - 0.5) < 0.03
    assert abs(lag_correlation(pair_mean, axis=-2)) < 0.03  # only along the smoothed axis
    mask = np.zeros_like(white, bool)
    mask[:, :100] = True
    white[:, 100:] = np.arange(100)  # structure outside the mask is ignored
    assert abs(lag_correlation(white, mask=mask)) < 0.03


@pytest.mark.parametrize("coils", [1, 4, 8])
def test_chi_dof_recovers_the_degrees_of_freedom(coils):
    rng = np.random.default_rng(coils)
    mags = np.sqrt((rng.normal(0, 7, (200000, 2 * coils)) ** 2).sum(axis=1))
    assert abs(chi_dof(mags) / (2 * coils) - 1) < 0.1


def test_noise_profile_tells_white_from_zero_filled_and_rician_from_sum_of_squares(phantom_2d):
    from denoise.noise import add_noise
    from denoise.realnoise import noise_profile

    clean = np.zeros((4, 96, 96))
    clean[:, 24:72, 24:72] = np.resize(phantom_2d, (48, 48)) + 200.0  # a bright object, a wide empty background
    white = add_noise(clean, "rician:0.03", seed=0)
    filled = add_noise(clean, "mrkspace:0.03,zf=2", seed=0)
    sos = add_noise(clean, "mrkspace:0.03,coils=4", seed=0)
    pw, pf, ps = (noise_profile(x, noise=x - clean) for x in (white, filled, sos))
    assert abs(pw["lag1_x"]) < 0.1 and pf["lag1_x"] > 0.4 and pf["lag1_y"] > 0.4
    assert abs(pw["bg_dof"] - 2) < 0.3 and abs(ps["bg_dof"] - 8) < 1.2
    assert np.isnan(noise_profile(clean)["bg_dof"])  # a zeroed background says nothing


def test_consistent_repeats_survive_a_blank_repeat(clean):
    from denoise.realnoise import consistent_repeats

    rng = np.random.default_rng(5)
    repeats = clean[None] + rng.normal(0, 20, (6, *clean.shape))
    assert consistent_repeats(repeats) == list(range(6))
    repeats[0] = 0.0  # a blank time point: no correlation at all
    assert consistent_repeats(repeats) == [1, 2, 3, 4, 5]


def test_background_artefacts_are_not_reported_as_correlated_noise(phantom_2d):
    """A tiny very bright spot makes dim tissue look like 'background': its smoothness must not be
    reported as noise correlation (chi dof far below 2 = not noise)."""
    from denoise.noise import add_noise
    from denoise.scan import Scan
    from denoise.scan_task import _noise_correlation

    img = np.zeros((128, 128), np.float32)
    yy, xx = np.ogrid[:128, :128]
    img[(yy - 64) ** 2 + (xx - 64) ** 2 < 40**2] = 100.0
    img[10:20, 10:20] = 3000.0
    noisy = add_noise(img, "rician:0.002", seed=0)
    assert np.isnan(_noise_correlation(Scan(noisy, (1.0, 1.0), modality="MR")))


def test_no_reference_measures_tell_noise_removal_from_anatomy_removal_and_added_grids(phantom_2d):
    rng = np.random.default_rng(3)
    clean = np.stack([phantom_2d + 100.0] * 4)
    noisy = clean + rng.normal(0, 20.0, clean.shape)
    ideal = no_reference_measures(noisy, clean)  # exactly the noise removed
    assert ideal["sigma_after"] < 0.3 * ideal["sigma_before"]
    assert abs(ideal["removed_image_corr"]) < 0.1 and ideal["pattern_ratio"] < 1.0
    faded = clean.mean() + 0.5 * (clean - clean.mean())  # half the contrast removed with the noise
    assert no_reference_measures(noisy, faded)["removed_image_corr"] > 0.5
    y, x = np.indices(clean.shape[-2:])
    grid = clean + 15.0 * ((y + x) % 2 * 2 - 1)  # a denoiser that leaves a 2-pixel checkerboard
    assert no_reference_measures(noisy, grid)["pattern_ratio"] > 1.0
