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


def test_periodic_pattern_measures_a_two_pixel_grid_and_ignores_smooth_anatomy(disc_image):
    """A checkerboard or line grid of amplitude a reads as ~a; a smooth image as ~0; white noise of
    std s as a small fraction of s (its share of the spectrum near Nyquist); odd sizes work."""
    yy, xx = np.mgrid[:128, :127]
    smooth = np.exp(-((yy - 64.0) ** 2 + (xx - 60.0) ** 2) / 800.0) * 100
    assert fidelity.periodic_pattern(smooth) < 0.01
    for grid in ((-1.0) ** (yy + xx), (-1.0) ** xx, (-1.0) ** yy):
        assert fidelity.periodic_pattern(smooth + 0.5 * grid) == pytest.approx(0.5, rel=0.05)
    noise = np.random.default_rng(0).normal(0, 1.0, (8, 128, 128))
    assert 0.05 < fidelity.periodic_pattern(noise) < 0.3
    # a 3D volume: the pattern of its slices
    vol = np.stack([smooth, smooth + 0.5 * (-1.0) ** (yy + xx)])
    assert fidelity.periodic_pattern(vol) == pytest.approx(np.sqrt(0.5 * 0.25), rel=0.05)


def test_add_blobs_adds_small_faint_discs_on_tissue_and_leaves_the_input_alone():
    rng = np.random.default_rng(3)
    stack = np.zeros((5, 48, 48), np.float32)
    stack[:, 8:40, 8:40] = 1.0  # tissue; the rest is background
    seen_sign, spans = set(), set()
    for _ in range(40):
        out = fidelity.add_blobs(stack, rng, centre=2)
        diff = out - stack
        assert stack.max() == 1.0 and np.count_nonzero(stack - np.where(stack, 1.0, 0.0)) == 0  # input untouched
        changed = np.abs(diff[2]) > 0
        assert changed.any() and np.abs(diff).max() <= 3 * 0.12 + 1e-6  # at most three overlapping discs
        ys, xs = np.nonzero(changed)
        assert ys.min() >= 8 - 5 and ys.max() <= 40 + 4 and xs.min() >= 8 - 5 and xs.max() <= 40 + 4  # centred on tissue
        assert changed.sum() <= 3 * np.pi * 4.5**2
        seen_sign.add(float(np.sign(diff[2][changed][0])))
        spans.add(int(sum(np.abs(diff[z]).max() > 0 for z in range(5))))
    assert seen_sign == {-1.0, 1.0} and {1, 3} <= spans
    empty = np.zeros((1, 16, 16), np.float32)
    assert np.array_equal(fidelity.add_blobs(empty, rng), empty)  # nothing to put them on


def test_lesion_augment_puts_the_same_blobs_in_input_and_target():
    from denoise.data import PatchSampler

    vol = np.ones((12, 40, 40), np.float32)
    kw = dict(noise="gaussian:0", patch_size=16, spatial_dims=2, context=1, seed=5)
    noisy, clean = PatchSampler([vol], lesion_augment=1.0, **kw).batch(16)
    _, plain = PatchSampler([vol], **kw).batch(16)
    assert np.all(plain == 1.0)
    assert all(np.abs(c - 1.0).max() > 0.01 for c in clean)  # every patch has a blob
    assert np.allclose(noisy[:, 1], clean[:, 0])  # noise-free: the input's centre slice is the target


def test_insert_spheres_places_separate_lesions_of_the_asked_size_and_contrast():
    vol = np.zeros((15, 120, 120), np.float32)
    vol[:, 10:110, 10:110] = 100.0
    lesions = [(d, c) for d in (3.0, 5.0, 8.0) for c in (3.0, 5.0, 10.0)]
    out, masks = fidelity.insert_spheres(vol, lesions, (1.0, 0.8, 0.8))
    assert vol.max() == 100.0  # input untouched
    added = out - vol
    labels, n = ndimage.label(added != 0)
    assert n == len(lesions)  # nine separate spheres
    for (d, c), (les, ring) in zip(lesions, masks):
        assert np.allclose(added[les], c) and not (les & ring).any()
        assert not (added[ring] != 0).any()  # rings hold no lesion, not even a neighbour's
        zs = np.nonzero(labels == labels[les][0])[0]
        radius_px = d / 2 / 0.8
        assert les.sum() == pytest.approx(np.pi * radius_px**2, rel=0.35)
        assert (d / 2) - 1 <= (zs.max() - zs.min()) / 2 <= d / 2 + 0.01 or d <= 3  # spans its diameter in z
    with pytest.raises(ValueError):
        fidelity.insert_spheres(vol[:, 40:60, 40:60], lesions, (1.0, 0.8, 0.8))


def test_paired_contrast_kept_is_one_for_identity_and_half_for_a_halving_denoiser():
    rng = np.random.default_rng(1)
    vol = np.full((9, 64, 64), 100.0, np.float32)
    out, masks = fidelity.insert_spheres(vol, [(6.0, 5.0)], (1.0, 1.0, 1.0))
    noise = rng.normal(0, 10, vol.shape).astype(np.float32)
    les = masks[0][0]
    assert fidelity.paired_contrast_kept(out + noise, vol + noise, les, 5.0) == pytest.approx(1.0)
    smooth = lambda a: a - 0.5 * (a - 100.0)  # noqa: E731 - keeps half of every departure from the mean
    assert fidelity.paired_contrast_kept(smooth(out + noise), smooth(vol + noise), les, 5.0) == pytest.approx(0.5)
