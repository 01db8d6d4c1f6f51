import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from denoise.metrics import estimate_sigma, foreground_mask, psnr, ssim
from denoise.models import ClassicalDenoiser
from denoise.noise import add_noise


def test_psnr_and_ssim_equal_skimage_on_2d(phantom_2d, rng):
    noisy = phantom_2d + rng.normal(0, 30, phantom_2d.shape).astype(np.float32)
    assert psnr(phantom_2d, noisy, data_range=1000) == pytest.approx(
        peak_signal_noise_ratio(phantom_2d, noisy, data_range=1000), abs=1e-6)
    ref = structural_similarity(phantom_2d, noisy, data_range=1000, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(phantom_2d, noisy, data_range=1000) == pytest.approx(ref, abs=1e-6)


def test_volume_psnr_is_global_mse_not_mean_of_slices(rng):
    clean = np.zeros((2, 16, 16))
    test = clean.copy()
    test[0] += 0.1  # all error in one slice
    test[1] += 0.01  # a little in the other, so every slice's PSNR is finite
    whole = psnr(clean, test, data_range=1.0)
    per_slice_mean = np.mean([psnr(clean[i], test[i], data_range=1.0) for i in range(len(clean))])
    assert whole == pytest.approx(10 * np.log10(1 / ((0.01 + 0.0001) / 2)))
    assert abs(whole - per_slice_mean) > 5  # the mean of slice PSNRs (20 and 40 dB) is far from it


def test_data_range_is_required(phantom_2d):
    with pytest.raises(TypeError):
        psnr(phantom_2d, phantom_2d)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="data_range"):
        psnr(phantom_2d, phantom_2d, data_range=0)


def test_mask_restricts_error(phantom_2d):
    mask = foreground_mask(phantom_2d)
    test = phantom_2d.copy()
    test[~mask] += 500  # error only in background
    assert psnr(phantom_2d, test, data_range=1000, mask=mask) == float("inf")
    assert psnr(phantom_2d, test, data_range=1000) < 20
    assert 0.2 < mask.mean() < 0.95


def test_estimate_sigma_tracks_noise(phantom_2d, rng):
    flat = np.full((128, 128), 100.0)
    assert estimate_sigma(flat + rng.normal(0, 5, flat.shape)) == pytest.approx(5, rel=0.15)


@pytest.mark.parametrize("method", ["nlm", "tv", "gaussian", "wavelet", "median"])
def test_classical_methods_raise_psnr(phantom_2d, method):
    clean = phantom_2d / 1000.0
    noisy = add_noise(clean, "gaussian:0.1", seed=0, reference=1.0)
    den = ClassicalDenoiser(method, sigma=0.1).denoise_batch(noisy[None])[0]
    assert psnr(clean, den, data_range=1.0) > psnr(clean, noisy, data_range=1.0) + 1.0
    assert den.shape == noisy.shape


def test_rician_bias_correction_lowers_background(phantom_2d):
    clean = phantom_2d / 1000.0
    noisy = add_noise(clean, "rician:0.08", seed=0, reference=1.0)
    plain = ClassicalDenoiser("nlm", sigma=0.08).denoise_batch(noisy[None])[0]
    corr = ClassicalDenoiser("nlm", sigma=0.08, rician=True).denoise_batch(noisy[None])[0]
    bg = clean == 0
    assert np.abs(corr[bg]).mean() < np.abs(plain[bg]).mean()
