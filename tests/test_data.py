import numpy as np
import pytest

from denoise.config import TrainConfig
from denoise.data import PatchSampler
from denoise.metrics import estimate_sigma
from denoise.noise import add_noise
from denoise.noise_level import noise_level, with_noise_channel


def test_tiled_noise_level_reads_like_training_patches():
    """On a slice with a large background, the whole-image estimate reads low (Rayleigh background
    has a smaller spread); foreground-centred tiles read like the training patches."""
    img = np.zeros((256, 256), np.float32)
    yy, xx = np.mgrid[:256, :256]
    img[(yy - 128) ** 2 + (xx - 128) ** 2 < 70**2] = 0.8  # a small head in a big field of view
    noisy = add_noise(img, "rician:0.05", seed=0, reference=1.0)
    patch_estimates = [estimate_sigma(noisy[y : y + 64, x : x + 64]) for y, x in [(96, 96), (100, 130), (130, 100)]]
    tiled = noise_level(noisy, patch=64)
    whole = noise_level(noisy)
    assert abs(tiled - np.mean(patch_estimates)) < abs(whole - np.mean(patch_estimates))
    assert whole < tiled <= 0.05 * 1.1
    batch = with_noise_channel(noisy[None, None], patch=64)
    assert batch.shape == (1, 2, 256, 256) and np.allclose(batch[0, 1], tiled)


def test_foreground_fraction_controls_background_patches():
    from denoise.data import PatchSampler

    vol = np.zeros((4, 128, 128), np.float32)
    vol[:, 48:80, 48:80] = 1.0  # small bright object in a big empty field
    def empty_share(fraction):
        s = PatchSampler([vol], noise="gaussian:0", spatial_dims=2, patch_size=16, seed=0, foreground_fraction=fraction)
        _, clean = s.batch(200)
        return np.mean([c.max() == 0 for c in clean])
    assert empty_share(1.0) == 0
    assert 0.3 < empty_share(0.0) < 1.0


def test_wavelet_sigma_equals_skimage_estimate():
    """The fast per-tile estimate is skimage's estimate_sigma, for slices, volumes and images with
    zeroed background (zeros are excluded by both)."""
    from denoise.noise_level import wavelet_sigma

    rng = np.random.default_rng(3)
    img = np.zeros((40, 64, 48), np.float32)
    img[:, 10:50, 8:40] = 0.7
    noisy = add_noise(img, "rician:0.04", seed=1, reference=1.0)
    noisy[:, :, :4] = 0.0
    for case in (noisy[5], noisy, noisy[:3], rng.normal(size=(33, 31)), np.zeros((16, 16))):
        assert np.isclose(wavelet_sigma(case), estimate_sigma(case), rtol=1e-9, atol=1e-12)


def test_all_axes_slices_along_every_axis():
    """With all_axes, 2D patches come from all three orientations of a volume, and patches still
    match their clean targets."""
    from denoise.data import PatchSampler

    vol = np.zeros((32, 32, 32), np.float32)
    vol[::4] = 1.0  # sheets across axis 0: slices along axis 0 are flat, the others show stripes

    def striped_share(all_axes):
        s = PatchSampler([vol], noise="gaussian:0", spatial_dims=2, patch_size=16, seed=0, all_axes=all_axes)
        noisy, clean = s.batch(90)
        assert np.allclose(noisy[:, 0], clean[:, 0])
        return np.mean([c.std() > 0 for c in clean[:, 0]])

    assert striped_share(False) == 0
    assert 0.4 < striped_share(True) < 0.9  # two axes of three


def test_numpy_histogram_shift_is_monais_transform_with_the_same_random_stream():
    """The sampler's fast histogram shift draws the same control points as MONAI's
    RandHistogramShift from the same seed and maps numpy patches to the same values (MONAI's torch
    path, float32), leaving patches it skips untouched."""
    from monai.transforms import RandHistogramShift

    from denoise.data import NumpyHistogramShift

    ours, monai = NumpyHistogramShift((4, 8), prob=0.5), RandHistogramShift((4, 8), prob=0.5)
    ours.set_random_state(seed=3)
    monai.set_random_state(seed=3)
    rng = np.random.default_rng(0)
    shifted = 0
    for _ in range(20):
        patch = rng.uniform(0.1, 0.9, (5, 16, 16)).astype(np.float32)
        a, b = ours(patch), np.asarray(monai(patch))
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-6)
        shifted += not np.array_equal(a, patch)
    assert 4 <= shifted <= 16  # prob 0.5: some patches remapped, some left alone


def test_contrast_augment_remaps_clean_patches_monotonically_before_the_noise():
    """contrast_augment changes the clean target's contrast (a monotone remapping, possibly
    darkened), never its ordering of intensities; the noise is added afterwards at the spec's level
    (relative to the unscaled maximum); lowdose noise, tied to the unaltered attenuation, refuses it."""
    import pytest

    from denoise.config import TrainConfig
    from denoise.data import PatchSampler

    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:8, :48, :48]
    vol = (0.2 + 0.6 * (np.sin(yy / 5.0) * np.cos(xx / 7.0) + 1) / 2 + 0.01 * zz).astype(np.float32)
    vol += rng.uniform(0, 1e-3, vol.shape).astype(np.float32)  # distinct values: ranks are well defined
    kw = dict(noise="gaussian:0.05", spatial_dims=2, patch_size=24, seed=5)
    noisy_p, plain = PatchSampler([vol], **kw).batch(40)
    noisy_a, aug = PatchSampler([vol], contrast_augment=1.0, **kw).batch(40)
    changed = 0
    for p, a in zip(plain[:, 0], aug[:, 0]):
        order = np.argsort(p, axis=None)
        assert np.all(np.diff(a.ravel()[order]) >= -1e-6)  # monotone in the original intensities
        assert a.max() <= p.max() + 1e-6 and a.min() >= 0
        changed += not np.allclose(a, p, atol=1e-3)
    assert changed >= 35
    assert abs(np.std(noisy_a - aug) - 0.05) < 0.005 and abs(np.std(noisy_p - plain) - 0.05) < 0.005
    with pytest.raises(ValueError, match="lowdose"):
        PatchSampler([vol], noise="lowdose:0.25", noise_fields=[vol * 0], spatial_dims=2, patch_size=24,
                     contrast_augment=0.5)
    with pytest.raises(ValueError, match="probability"):
        TrainConfig(contrast_augment=1.5)
    for name in ("contrast_augment", "coarse_augment", "fine_augment"):  # refused before any data is read
        with pytest.raises(ValueError, match=f"{name}.*lowdose"):
            TrainConfig(noise="lowdose:0.1-0.25", **{name: 0.5})


def test_coarse_augment_shows_the_anatomy_at_twice_the_pixel_size():
    """With coarse_augment, a patch is the block average of a region twice its size in-plane: a
    2-pixel checkerboard averages to a flat patch; the patch size and the noise level are
    unchanged, in 2D and 3D."""
    from denoise.data import PatchSampler

    zz, yy, xx = np.mgrid[:12, :64, :64]
    fine = (0.5 + 0.3 * ((yy + xx) % 2 * 2 - 1)).astype(np.float32)
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=16, seed=1)
    _, plain = PatchSampler([fine], **kw).batch(20)
    _, coarse = PatchSampler([fine], coarse_augment=1.0, **kw).batch(20)
    assert plain.shape == coarse.shape == (20, 1, 16, 16)
    assert np.all(plain.std(axis=(-2, -1)) > 0.29) and np.allclose(coarse, 0.5, atol=1e-6)
    noisy, c3 = PatchSampler([fine], coarse_augment=1.0, **{**kw, "spatial_dims": 3, "patch_size": 8,
                                                             "noise": "gaussian:0.05"}).batch(6)
    assert c3.shape == (6, 1, 8, 8, 8) and np.allclose(c3, 0.5, atol=1e-6)  # in-plane averaging in 3D too
    assert abs(np.std(noisy - c3) - 0.05) < 0.005


def test_fine_augment_shows_the_anatomy_at_half_the_pixel_size():
    """With fine_augment, a patch is a region half its size in-plane upsampled 2x: a step edge
    spreads over more pixels (smaller largest 1-pixel jump), values stay in the original range,
    and shapes and noise level are unchanged, in 2D and 3D."""
    from denoise.data import PatchSampler

    zz, yy, xx = np.mgrid[:12, :64, :64]
    steps = (0.2 + 0.6 * ((xx // 8) % 2)).astype(np.float32)  # sharp vertical edges every 8 pixels
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=16, seed=1)
    _, plain = PatchSampler([steps], **kw).batch(20)
    _, fine = PatchSampler([steps], fine_augment=1.0, **kw).batch(20)
    assert plain.shape == fine.shape == (20, 1, 16, 16)
    jump = lambda a: np.abs(np.diff(a, axis=-1)).max(axis=(-2, -1))  # noqa: E731  (rotations/flips keep edges straight)
    jump_y = lambda a: np.abs(np.diff(a, axis=-2)).max(axis=(-2, -1))  # noqa: E731
    big_plain = np.maximum(jump(plain), jump_y(plain))
    big_fine = np.maximum(jump(fine), jump_y(fine))
    assert np.allclose(big_plain[big_plain > 0], 0.6) and np.all(big_fine < 0.55)
    assert fine.min() >= 0.2 - 1e-6 and fine.max() <= 0.8 + 1e-6
    noisy, f3 = PatchSampler([steps], fine_augment=1.0, **{**kw, "spatial_dims": 3, "patch_size": 8,
                                                            "noise": "gaussian:0.05"}).batch(6)
    assert f3.shape == (6, 1, 8, 8, 8) and abs(np.std(noisy - f3) - 0.05) < 0.005


def test_thick_augment_takes_slices_two_or_three_apart():
    """With thick_augment, the slices of a 3D patch (and a 2.5D stack's neighbours) are 2 or 3
    apart, evenly within a patch; without it they are adjacent. The volume's value is its slice
    index, so a patch's slice spacing reads off its clean values."""
    from denoise.data import PatchSampler

    vol = np.broadcast_to(np.arange(60, dtype=np.float32)[:, None, None] / 60 + 0.1, (60, 24, 24)).copy()
    kw = dict(noise="gaussian:0", patch_size=8, seed=2)

    def spacings(clean: np.ndarray) -> set[float]:
        gaps = {round(abs(float(g)) * 60, 3) for g in np.diff(clean[:, 0, :, 0, 0], axis=1).ravel()}
        assert all(len({round(abs(float(g)) * 60, 3) for g in np.diff(c[0, :, 0, 0])}) == 1 for c in clean)
        return gaps

    _, plain = PatchSampler([vol], spatial_dims=3, patch_depth=6, **kw).batch(20)
    _, thick = PatchSampler([vol], spatial_dims=3, patch_depth=6, thick_augment=1.0, **kw).batch(40)
    assert plain.shape == (20, 1, 6, 8, 8) and thick.shape == (40, 1, 6, 8, 8)
    assert spacings(plain) == {1.0} and spacings(thick) == {2.0, 3.0}
    noisy, _ = PatchSampler([vol], spatial_dims=2, context=1, thick_augment=1.0, **kw).batch(40)
    gaps = {round(abs(float(n[1, 0, 0] - n[0, 0, 0])) * 60, 3) for n in noisy}
    assert gaps <= {0.0, 2.0, 3.0} and {2.0, 3.0} <= gaps  # 0: the lone-slice stacks


def test_reference_noise_gives_the_target_independent_full_dose_noise():
    """With reference_noise the target is a noisy full-dose image: clean plus an independent draw
    of the volume's own noise field (another slice), its std drawn per patch up to the maximum;
    the input adds the dose's noise on top. Without it the target is the clean patch."""
    import pytest

    from denoise.config import TrainConfig
    from denoise.data import PatchSampler

    rng = np.random.default_rng(0)
    vol = np.full((12, 48, 48), 0.5, dtype=np.float32)
    field = rng.normal(0.0, 0.02, vol.shape).astype(np.float32)
    kw = dict(noise="lowdose:0.25", spatial_dims=2, patch_size=32, noise_fields=[field], seed=1)
    noisy, target = PatchSampler([vol], reference_noise=0.01, **kw).batch(64)
    kept, added = target[:, 0] - 0.5, noisy[:, 0] - target[:, 0]
    stds = kept.reshape(64, -1).std(axis=1)
    assert 0 < stds.min() and stds.max() <= 0.01 * 1.1 and stds.max() > 3 * stds.min()  # drawn per patch
    assert abs(np.corrcoef(kept.ravel(), added.ravel())[0, 1]) < 0.05  # independent of the input's noise
    np.testing.assert_allclose(added.std(), 0.02 / np.sqrt(0.25), rtol=0.05)  # the dose's noise on top
    noisy, target = PatchSampler([vol], reference_noise=0.01, context=1, **kw).batch(16)
    assert all(abs(np.corrcoef((n - t[0]).ravel(), t[0].ravel())[0, 1]) < 0.1 for n, t in zip(noisy[:, 1], target))
    _, plain = PatchSampler([vol], **kw).batch(8)
    assert np.array_equal(plain, np.full_like(plain, 0.5))
    with pytest.raises(ValueError, match="lowdose"):
        PatchSampler([vol], noise="gaussian:0.1", spatial_dims=2, patch_size=32, reference_noise=0.01)
    with pytest.raises(ValueError, match="lowdose"):
        TrainConfig(noise="rician:0.05", reference_noise=0.01)


def _sampler_for_streams(seed=0):
    from denoise.data import PatchSampler

    rng = np.random.default_rng(1)
    vol = rng.random((8, 48, 48)).astype(np.float32)
    return PatchSampler([vol], noise="rician:0.01-0.09", spatial_dims=2, patch_size=16, seed=seed, contrast_augment=0.5)


def test_patch_batches_with_workers_are_distinct_and_reproducible():
    """Each DataLoader worker draws its own patches (a forked copy of one seeded sampler would
    repeat the other's), and the stream is the same for the same seed and number of workers."""
    from itertools import islice

    from denoise.data import patch_batches

    def first(n, workers, seed=5):
        it = patch_batches(_sampler_for_streams(), 4, num_workers=workers, seed=seed)
        return [tuple(t.numpy().copy() for t in b) for b in islice(it, n)]

    a, b = first(6, 2), first(6, 2)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    for i in range(len(a)):
        for j in range(i):
            assert not np.array_equal(a[i][1], a[j][1]), (i, j)
    assert a[0][0].shape == (4, 1, 16, 16) and a[0][0].dtype == np.float32
    other = first(2, 2, seed=6)
    assert not np.array_equal(other[0][1], a[0][1])
    # no workers: exactly the sampler's own seeded stream
    plain = first(2, 0)
    own = _sampler_for_streams()
    for got in plain:
        want = own.batch(4)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_sampling_leaves_monai_metadata_tracking_as_it_was():
    """The sampler switches MONAI's MetaTensor tracking off while it draws (a third of the time)
    and restores the caller's setting, on or off, afterwards."""
    from monai.data import get_track_meta, set_track_meta

    s = _sampler_for_streams()
    for setting in (True, False):
        set_track_meta(setting)
        s.batch(2)
        assert get_track_meta() is setting
    set_track_meta(True)


def test_coarse_max_shows_the_anatomy_at_up_to_that_many_times_the_pixel_size():
    """With coarse_max 4, coarse patches are block averages at 2, 3 and 4 times the pixel size: a
    ramp along x averaged over f pixels steps by f per pixel, so each patch's step is its factor."""
    import pytest

    from denoise.config import TrainConfig
    from denoise.data import PatchSampler

    zz, yy, xx = np.mgrid[:4, :96, :96]
    ramp = np.broadcast_to(xx, (4, 96, 96)).astype(np.float32)
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=16, seed=2, coarse_augment=1.0)
    _, plain = PatchSampler([ramp], **kw).batch(60)
    _, wide = PatchSampler([ramp], coarse_max=4, **kw).batch(60)
    assert wide.shape == plain.shape == (60, 1, 16, 16)

    def step(a):  # rotations and flips move the ramp to either axis, either sign
        return np.maximum(np.abs(np.diff(a, axis=-1)).max(axis=(-2, -1)), np.abs(np.diff(a, axis=-2)).max(axis=(-2, -1)))

    assert np.allclose(step(plain[:, 0]), 2.0)  # the default: always 2x
    factors = step(wide[:, 0])
    assert set(np.round(factors).astype(int)) == {2, 3, 4} and np.allclose(factors, np.round(factors))
    for bad in (1, 5):
        with pytest.raises(ValueError, match="coarse_max"):
            PatchSampler([ramp], coarse_max=bad, **kw)
        with pytest.raises(ValueError, match="coarse_max"):
            TrainConfig(coarse_max=bad)


def test_coarse_kspace_gives_coarse_patches_the_ringing_of_a_coarser_acquisition():
    """With coarse_kspace 1 every coarse patch is cut from k-space (`acquired_coarser`): a sharp
    edge rings (overshoot above the bright side, undershoot below the dark side: Gibbs), which the
    block-averaged patches of the same windows never do; without coarse_augment it is refused."""
    import pytest

    from denoise.config import TrainConfig
    from denoise.data import PatchSampler

    step = np.zeros((4, 128, 128), np.float32)
    step[:, :, 64:] = 1.0
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=16, seed=3, coarse_augment=1.0, foreground_fraction=0.0)
    _, block = PatchSampler([step], **kw).batch(80)
    _, ringing = PatchSampler([step], coarse_kspace=1.0, **kw).batch(80)
    assert block.min() >= 0.0 and block.max() <= 1.0
    assert ringing.max() > 1.05 or ringing.min() < -0.05  # some patch holds the edge and rings
    for bad in ({"coarse_kspace": 0.5, "coarse_augment": 0.0}, {"coarse_kspace": 1.5}):
        with pytest.raises(ValueError, match="coarse_kspace"):
            TrainConfig(**{"coarse_augment": 0.5, **bad})


def test_blur_augment_gives_patches_smoothed_in_input_and_target_alike():
    """With blur_augment 1 every clean patch is a reconstruction's blur of the same window: far less
    pixel-scale detail than the same windows without it (same seed, noise-free); refused outside [0, 1]."""
    import pytest

    from denoise.config import TrainConfig
    from denoise.data import PatchSampler

    rng = np.random.default_rng(1)
    vol = (1.0 + rng.random((4, 96, 96))).astype(np.float32)
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=32, seed=4)
    noisy_sharp, sharp = PatchSampler([vol], **kw).batch(8)
    noisy_blur, blurred = PatchSampler([vol], blur_augment=1.0, **kw).batch(8)
    assert blurred.shape == sharp.shape
    assert np.allclose(noisy_blur[:, :1], blurred, atol=1e-6)  # no noise: the input is the target

    def detail(a):
        return np.abs(np.diff(a, axis=-1)).mean()

    assert detail(blurred) < 0.8 * detail(sharp)
    with pytest.raises(ValueError, match="blur_augment"):
        TrainConfig(blur_augment=1.5)


def test_noise_weights_count_each_patch_relative_to_its_own_noise():
    from denoise.data import NOISE_WEIGHT_FLOOR, NOISE_WEIGHT_REF, noise_weights

    rng = np.random.default_rng(5)
    clean = np.full((4, 32, 32), 0.5)
    sigmas = np.array([0.01, 0.03, 0.09, 0.0005])  # the last below the floor
    noisy = clean + rng.normal(size=clean.shape) * sigmas[:, None, None]
    for power in (1.0, 2.0):
        w = noise_weights(noisy, clean, power)
        expected = (NOISE_WEIGHT_REF / np.maximum(sigmas, NOISE_WEIGHT_FLOOR)) ** power
        assert np.allclose(w, expected, rtol=0.15)  # the added noise is measured, not told
    assert np.all(noise_weights(noisy, clean, 0.0) == 1.0)
    # the noise is read in tissue: an air half (clean 0) with other values does not change it
    half = clean.copy()
    half[:, :, :16] = 0.0
    noisy_half = noisy.copy()
    noisy_half[:, :, :16] = np.abs(rng.normal(size=(4, 32, 16))) * 0.3
    assert np.allclose(noise_weights(noisy_half, half, 2.0), noise_weights(noisy[:, :, 16:], clean[:, :, 16:], 2.0))


def test_noise_weighting_sampler_weighs_low_noise_patches_more():
    flat = np.full((8, 48, 48), 0.6, np.float32)
    kw = dict(noise="gaussian:0.005-0.09", spatial_dims=2, patch_size=32, seed=4, context=1, noise_channel=True)
    noisy, clean, weight = PatchSampler([flat], noise_weighting=2.0, **kw).batch(16)
    assert weight.shape == clean.shape and noisy.shape[1] == 4  # 3 slices + the noise-level channel
    per = weight.reshape(16, -1)
    assert np.all(per.min(axis=1) == per.max(axis=1))  # one weight per patch
    added = (noisy[:, 1] - clean[:, 0]).reshape(16, -1).std(axis=1)
    assert np.corrcoef(np.log(per[:, 0]), np.log(added))[0, 1] < -0.99
    same_noisy, same_clean = PatchSampler([flat], **kw).batch(16)  # the weight takes no random draw
    assert np.array_equal(same_clean, clean) and np.array_equal(same_noisy, noisy)
    with pytest.raises(ValueError, match="noise_weighting"):
        TrainConfig(noise_weighting=-1.0)
