import numpy as np
import pytest
from scipy import ndimage

from denoise import fidelity


@pytest.fixture
def disc_image():
    yy, xx = np.mgrid[:128, :128]
    return ((yy - 64) ** 2 + (xx - 60) ** 2 <= 40**2).astype(np.float64) * 100.0


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_edge_rise_distance_matches_gaussian_blur(disc_image, sigma):
    """A step blurred by a Gaussian of s.d. sigma has a 10-90% rise of 2 * 1.2816 * sigma."""
    pts, dirs = fidelity.edge_points(disc_image)
    assert len(pts) >= 16
    blurred = ndimage.gaussian_filter(disc_image, sigma)
    rise = fidelity.edge_rise_distance(blurred, pts, dirs, pixel_mm=0.5)
    assert rise == pytest.approx(2 * 1.2816 * sigma * 0.5, rel=0.2)


def test_edge_rise_is_robust_to_noise_and_orders_blur(disc_image):
    pts, dirs = fidelity.edge_points(ndimage.gaussian_filter(disc_image, 1.0))
    rng = np.random.default_rng(0)
    sharp = ndimage.gaussian_filter(disc_image, 1.0) + rng.normal(0, 5, disc_image.shape)
    soft = ndimage.gaussian_filter(disc_image, 2.5) + rng.normal(0, 5, disc_image.shape)
    r_sharp = fidelity.edge_rise_distance(sharp, pts, dirs)
    r_soft = fidelity.edge_rise_distance(soft, pts, dirs)
    assert r_sharp < r_soft
    assert r_sharp == pytest.approx(2.56, rel=0.25)


def test_lesion_contrast_and_residual_correlation(disc_image):
    img, masks = fidelity.insert_lesion(disc_image, 10.0)
    assert masks[0].sum() > 0 and not (masks[0] & masks[1]).any()
    assert np.allclose(img[masks[0]] - disc_image[masks[0]], 10.0)
    assert fidelity.lesion_contrast_kept(disc_image, img, masks, 10.0) == pytest.approx(1.0)
    assert fidelity.lesion_contrast_kept(disc_image, disc_image, masks, 10.0) == pytest.approx(0.0)
    noisy = img + np.random.default_rng(1).normal(0, 5, img.shape)
    assert abs(fidelity.residual_correlation(img, noisy, img)) < 0.05  # removed only noise
    assert fidelity.residual_correlation(img, noisy, np.zeros_like(img)) > 0.9  # removed the anatomy
    assert fidelity.edge_gradient_ratio(img, ndimage.gaussian_filter(img, 2)) < 0.8
