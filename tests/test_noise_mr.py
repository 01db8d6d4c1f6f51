"""MR k-space noise (`denoise.noise_mr`, the ``mrkspace`` kind and noise mixtures): every expectation
is computed from theory (the k-space transfer function, chi/Rice distributions, the SENSE g-factor
formula), never from a stored output."""

import numpy as np
import pytest
from scipy import stats

from denoise.noise import NoiseMix, add_noise, check_training_options, parse_noise
from denoise.noise_mr import G_MAX, draw_coil_array, g_factor, kspace_filter, mr_kspace_noise, sense_g_factor
from denoise.scan import Scan

SIGMA = 0.002  # high SNR on a flat image of 1: noisy - clean is the noise projected on the signal


def _noise(spec, shape, seed=0, level=1.0):
    clean = np.full(shape, level, np.float32)
    return add_noise(clean, spec, seed=seed, reference=1.0).astype(np.float64) - level


def _lag1(d, axis):
    d = d - d.mean()
    a = np.moveaxis(d, axis, -1)
    return float(np.mean(a[..., 1:] * a[..., :-1]) / np.mean(d * d))


def _box_lag1(n, kept, weight=None):
    """Expected lag-1 correlation of the real part of noise whose power spectrum along an axis of n
    samples is |H(k)|^2 on the integer frequencies ``kept``: Re(sum |H|^2 e^{2 pi i k / n}) / sum |H|^2."""
    w2 = np.ones(len(kept)) if weight is None else weight**2
    return float(np.sum(w2 * np.cos(2 * np.pi * np.asarray(kept) / n)) / np.sum(w2))


def _tol(n_samples):  # a generous 8 standard errors of a correlation estimate
    return 8.0 / np.sqrt(n_samples)


# --- k-space shaping: correlation and noise power spectrum ------------------------------------------------

def test_kspace_filter_keeps_the_central_region_and_the_partial_fourier_lines():
    h = np.fft.fftshift(kspace_filter((64, 48), zf=2, pf=0.75))
    rows, cols = np.nonzero(h.any(axis=1))[0] - 32, np.nonzero(h.any(axis=0))[0] - 24  # integer frequencies
    assert cols.tolist() == list(range(-12, 12))  # 48 / 2 = 24 central readout samples
    assert rows.tolist() == list(range(-16, -16 + 24))  # 32 acquired lines, the lowest 75 % of them
    assert set(np.unique(h)) == {0.0, 1.0}
    full = kspace_filter((33, 20))
    assert np.all(full == 1.0)


def test_zero_fill_correlates_neighbours_as_the_kept_box_predicts():
    n, z = 128, 48
    white = _noise(f"mrkspace:{SIGMA}", (z, n, n))
    zf2 = _noise(f"mrkspace:{SIGMA},zf=2", (z, n, n), seed=1)
    expected = _box_lag1(n, range(-32, 32))  # 64 central frequencies of 128
    assert expected > 0.6
    tol = _tol(white.size / 4)  # neighbouring samples share noise: fewer independent ones
    for axis in (-1, -2):
        assert abs(_lag1(white, axis)) < tol
        assert _lag1(zf2, axis) == pytest.approx(expected, abs=tol)


def test_apodisation_raises_the_correlation_by_the_windows_power():
    n, z = 96, 48
    k = np.arange(-n // 2, n // 2)
    expected_full = _box_lag1(n, k, 0.54 + 0.46 * np.cos(np.pi * k / (n / 2)))  # Hamming over all of k-space
    k2 = np.arange(-n // 4, n // 4)
    expected_zf = _box_lag1(n, k2, 0.54 + 0.46 * np.cos(np.pi * k2 / (n / 4)))  # over the central half
    ham = _noise(f"mrkspace:{SIGMA},filter=hamming", (z, n, n))
    ham_zf = _noise(f"mrkspace:{SIGMA},zf=2,filter=hamming", (z, n, n), seed=1)
    tol = _tol(ham.size / 4)
    assert expected_full > 0.3 and expected_zf > _box_lag1(n, k2) + 0.1
    for axis in (-1, -2):
        assert _lag1(ham, axis) == pytest.approx(expected_full, abs=tol)
        assert _lag1(ham_zf, axis) == pytest.approx(expected_zf, abs=tol)


def test_partial_fourier_correlates_along_rows_only():
    n, z = 128, 48
    d = _noise(f"mrkspace:{SIGMA},pf=0.6", (z, n, n))
    lines = int(np.ceil(0.6 * n))
    expected = _box_lag1(n, range(-n // 2, -n // 2 + lines))  # the real part sees Re of the one-sided ACF
    tol = _tol(d.size / 2)
    assert expected > 0.1
    assert _lag1(d, -2) == pytest.approx(expected, abs=tol)
    assert abs(_lag1(d, -1)) < tol


def _nps(d):
    """Noise power spectrum (fftshifted, frequency 0 at the centre), averaged over the slices."""
    return np.fft.fftshift(np.mean(np.abs(np.fft.fft2(d - d.mean())) ** 2, axis=0))


def test_noise_power_spectrum_is_zero_outside_the_kept_region_and_flat_inside():
    n, z = 64, 160
    p = _nps(_noise(f"mrkspace:{SIGMA},zf=2", (z, n, n)))
    k = np.arange(n) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    kept = (np.abs(ky) <= 15) & (np.abs(kx) <= 15)  # central 32: -16..15, and its mirror -15..16
    outside = (np.abs(ky) > 16) | (np.abs(kx) > 16)
    inside = p[kept].mean()
    assert p[outside].max() < 1e-3 * inside
    assert np.std(p[kept]) / inside < 2.5 / np.sqrt(z)  # each bin ~ exponential averaged over z slices
    # Parseval: total noise power = n^2 per pixel variance (sigma^2 per real part)
    assert p.sum() / n**4 == pytest.approx(SIGMA**2, rel=0.03)


@pytest.mark.parametrize("filt", ["hamming", "hann", "fermi"])
def test_noise_power_spectrum_follows_the_window(filt):
    n, z = 64, 160
    p = _nps(_noise(f"mrkspace:{SIGMA},zf=2,filter={filt}", (z, n, n)))
    k = np.arange(n) - n // 2
    u = k / 16.0  # the acquired half-extent is 16 samples
    ky, kx = np.meshgrid(u, u, indexing="ij")
    if filt == "fermi":
        w = 1.0 / (1.0 + np.exp((np.hypot(ky, kx) - 0.9) / 0.025))
    else:
        a = 0.54 if filt == "hamming" else 0.5
        w = (a + (1 - a) * np.cos(np.pi * ky)) * (a + (1 - a) * np.cos(np.pi * kx))
    w = np.where((np.abs(ky) <= 1) & (np.abs(kx) <= 1), w, 0.0)
    mirror = np.roll(np.flip(w, (0, 1)), 1, axis=(0, 1))  # w(-k): index i <-> n - i
    w2 = 0.5 * (w**2 + mirror**2)  # the real part of the noise sees |H(k)|^2 and |H(-k)|^2
    expected = w2 / w2.sum() * p.sum()
    strong = expected > 0.2 * expected.max()
    ratio = p[strong] / expected[strong]
    assert np.median(np.abs(ratio - 1)) < 0.1
    assert np.corrcoef(p.ravel(), expected.ravel())[0, 1] > 0.97
    assert p[w2 == 0].max() < 1e-3 * p.max()


# --- coil combination: distributions ------------------------------------------------------------------------

@pytest.mark.parametrize("coils", [1, 4, 8])
def test_sum_of_squares_background_is_chi_with_2n_degrees_of_freedom(coils):
    s = 0.05
    bg = add_noise(np.zeros((256, 256), np.float32), f"mrkspace:{s},coils={coils}", seed=coils, reference=1.0).ravel()
    law = stats.chi(df=2 * coils, scale=s)
    assert bg.mean() == pytest.approx(law.mean(), rel=0.01)
    assert bg.var() == pytest.approx(law.var(), rel=0.03)
    assert stats.kstest(bg, law.cdf).pvalue > 1e-3
    assert stats.kstest(bg, stats.chi(df=2 * coils + 2, scale=s).cdf).pvalue < 1e-6  # the test can tell


def test_adaptive_background_is_rayleigh_whatever_the_coils():
    s = 0.05
    bg = add_noise(np.zeros((256, 256), np.float32), f"mrkspace:{s},coils=8,combine=adaptive", seed=3,
                   reference=1.0).ravel()
    assert stats.kstest(bg, stats.chi(df=2, scale=s).cdf).pvalue > 1e-3
    assert stats.kstest(bg, stats.chi(df=4, scale=s).cdf).pvalue < 1e-6


def test_defaults_are_rician_noise():
    """coils=1, zf=pf=accel=1, no filter, sos: the magnitude of x + complex white noise."""
    s, x = 0.05, 0.1  # SNR 2: strongly non-Gaussian
    clean = np.full((256, 256), x, np.float32)
    out = add_noise(clean, f"mrkspace:{s}", seed=4, reference=1.0).ravel()
    law = stats.rice(b=x / s, scale=s)
    assert stats.kstest(out, law.cdf).pvalue > 1e-3
    assert stats.kstest(out, stats.rice(b=1.1 * x / s, scale=s).cdf).pvalue < 1e-6
    ric = add_noise(clean, f"rician:{s}", seed=5, reference=1.0).ravel()
    assert stats.ks_2samp(out, ric).pvalue > 1e-3


@pytest.mark.parametrize("opts", ["zf=2,filter=hamming", "coils=8,zf=2,filter=hamming", "coils=8,pf=0.7,filter=fermi",
                                  "coils=6,zf=1.5,combine=adaptive"])
def test_level_is_the_foreground_noise_std(opts):
    """At high SNR the noise std of mrkspace:s is s x reference, whatever the coils and filter."""
    ref, s = 1000.0, 0.02
    clean = np.full((24, 96, 96), ref, np.float32)
    noisy = add_noise(clean, f"mrkspace:{s},{opts}", seed=6, reference=ref)
    assert np.std(noisy - clean) == pytest.approx(s * ref, rel=0.03)


# --- parallel imaging: g-factor -----------------------------------------------------------------------------

def test_g_factor_is_one_without_acceleration_or_with_orthogonal_coils():
    rng = np.random.default_rng(0)
    sens = rng.standard_normal((4, 32, 24)) + 1j * rng.standard_normal((4, 32, 24))
    assert np.array_equal(sense_g_factor(sens, 1), np.ones((32, 24)))
    ortho = np.zeros((2, 32, 24))
    ortho[0, :16], ortho[1, 16:] = 1.0, 1.0  # each coil sees one of the two aliased halves
    np.testing.assert_allclose(sense_g_factor(ortho, 2), 1.0, atol=1e-6)


def test_g_factor_of_two_overlapping_coils_is_the_textbook_value():
    """Coil sensitivities (1, c) at a pixel and (c, 1) at its partner: g = (1 + c^2) / (1 - c^2)."""
    for c in (0.2, 0.5, 0.8):
        sens = np.empty((2, 40, 8))
        sens[0, :20], sens[0, 20:], sens[1, :20], sens[1, 20:] = 1.0, c, c, 1.0
        np.testing.assert_allclose(sense_g_factor(sens * 3.0, 2), (1 + c * c) / (1 - c * c), rtol=1e-6)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_g_factor_matches_the_matrix_formula(r):
    rng = np.random.default_rng(r)
    parts = rng.standard_normal((r, 6, 30, 20)) + 1j * rng.standard_normal((r, 6, 30, 20))
    parts[1:] += 1.5 * parts[0]  # overlapping sensitivities: g well above 1
    a = np.moveaxis(parts.reshape(r, 6, -1), -1, 0).swapaxes(1, 2)  # (pixels, coils, R)
    m = a.conj().swapaxes(1, 2) @ a
    expected = np.sqrt(np.linalg.inv(m)[:, 0, 0].real * m[:, 0, 0].real).reshape(30, 20)
    assert expected.max() > 2
    np.testing.assert_allclose(g_factor(parts), np.clip(expected, 1, G_MAX), rtol=1e-5)


def test_coil_arrays_are_normalised_and_g_grows_with_acceleration():
    g = {}
    for r in (1, 2, 4):
        arr = draw_coil_array((64, 64), 8, r, np.random.default_rng(11))  # same geometry for every r
        np.testing.assert_allclose(np.sum(np.abs(arr.sens) ** 2, axis=0), 1.0, rtol=1e-12)
        g[r] = arr.amp / np.sqrt(r)
        assert g[r].min() >= 1.0 and g[r].max() <= G_MAX
    assert np.all(g[1] == 1.0) and g[4].mean() > g[2].mean() > 1.0
    assert np.array_equal(draw_coil_array((64, 64), 2, 4, np.random.default_rng(1)).amp,
                          draw_coil_array((64, 64), 2, 2, np.random.default_rng(1)).amp)  # R clipped to N


def test_g_map_is_the_same_whatever_the_row_blocks(monkeypatch):
    import denoise.noise_mr as noise_mr

    whole = draw_coil_array((70, 50), 12, 3, np.random.default_rng(3))
    for rows_per_block in (7, 1):
        monkeypatch.setattr(noise_mr, "_G_BLOCK", 12 * 50 * rows_per_block)
        assert np.array_equal(draw_coil_array((70, 50), 12, 3, np.random.default_rng(3)).amp, whole.amp)


def test_noise_std_map_follows_sqrt_r_times_g():
    rng = np.random.default_rng(5)
    arr = draw_coil_array((48, 48), 4, 2, rng)
    assert arr.amp.max() / arr.amp.min() > 1.2  # a g-map with contrast, so the test can tell
    s = 0.01
    stack = np.ones((500, 48, 48))
    std = np.std(mr_kspace_noise(stack, s, rng, coil_array=arr) - 1.0, axis=0)
    np.testing.assert_allclose(np.median(std / (s * arr.amp)), 1.0, rtol=0.02)
    high, low = arr.amp >= np.quantile(arr.amp, 0.8), arr.amp <= np.quantile(arr.amp, 0.2)
    assert std[high].mean() / std[low].mean() == pytest.approx(arr.amp[high].mean() / arr.amp[low].mean(), rel=0.03)
    assert np.corrcoef(std.ravel(), arr.amp.ravel())[0, 1] > 0.9
    # through add_noise: acceleration raises the noise by at least sqrt(R)
    plain = np.std(_noise("mrkspace:0.01,coils=4", (40, 48, 48)))
    accel = np.std(_noise("mrkspace:0.01,coils=4,accel=2", (40, 48, 48)))
    assert plain == pytest.approx(0.01, rel=0.03) and accel > np.sqrt(2) * plain


# --- API: seeds, shapes, parsing, ranges, mixtures, training ------------------------------------------------

SPEC = "mrkspace:0.05,coils=4,zf=1.5,pf=0.8,accel=2,filter=hann"


def test_same_seed_same_noise_and_input_untouched(phantom_2d):
    before = phantom_2d.copy()
    a = add_noise(phantom_2d, SPEC, seed=3)
    assert np.array_equal(a, add_noise(phantom_2d, SPEC, seed=3))
    assert not np.array_equal(a, add_noise(phantom_2d, SPEC, seed=4))
    assert np.array_equal(phantom_2d, before) and a.dtype == np.float32 and (a >= 0).all()


def test_volumes_are_their_slices_in_order(phantom_3d):
    vol3 = add_noise(phantom_3d, SPEC, seed=2, reference=1000.0)
    vol4 = add_noise(phantom_3d.reshape(4, 4, 24, 24), SPEC, seed=2, reference=1000.0)
    one = add_noise(phantom_3d[0], SPEC, seed=2, reference=1000.0)  # the same draws up to the first slice
    assert vol3.shape == phantom_3d.shape and vol4.shape == (4, 4, 24, 24)
    assert np.array_equal(vol4.reshape(vol3.shape), vol3) and np.array_equal(vol3[0], one)
    assert not np.array_equal(vol3[1] - phantom_3d[1], vol3[2] - phantom_3d[2])
    scan = add_noise(Scan(phantom_3d, (2, 1, 1), modality="MR"), SPEC, seed=2)
    assert isinstance(scan, Scan) and scan.array.shape == phantom_3d.shape


@pytest.mark.parametrize("spec", ["mrkspace:0.03", "mrkspace:0.03,coils=8,zf=2,pf=0.75,accel=2",
                                  "mrkspace:0.01-0.09,coils=1-16,zf=1-2,pf=0.6-1,accel=1-3,filter=fermi,combine=adaptive",
                                  "rician:0.01-0.09|mrkspace:0.01-0.09,coils=1-16,zf=1-2", "gaussian:0.1|speckle:0.2"])
def test_str_round_trips(spec):
    parsed = parse_noise(spec)
    assert str(parsed) == spec and parse_noise(str(parsed)) == parsed


def test_parsing_is_canonical():
    assert parse_noise(" MRKSPACE:0.03, Coils=8 ,filter=Hann") == parse_noise("mrkspace:0.03,filter=hann,coils=8")
    assert str(parse_noise("mrkspace:0.03,filter=hann,coils=8")) == "mrkspace:0.03,coils=8,filter=hann"
    assert parse_noise("mrkspace:0.03,coils=1,zf=1-1,pf=1,accel=1,filter=none,combine=sos") == parse_noise("mrkspace:0.03")
    assert parse_noise("mrkspace:0.03").kind == "mrkspace" and parse_noise("rician:0.1|mrkspace:0.1").kind == "mix"


def test_ranges_are_drawn_within_bounds_per_call():
    spec = parse_noise("mrkspace:0.01-0.09,coils=2-16,zf=1-2,pf=0.6-1,accel=1-3")
    rng = np.random.default_rng(0)
    draws = [spec.draw_options(rng) for _ in range(400)]
    for name, lo, hi in (("coils", 2, 16), ("zf", 1, 2), ("pf", 0.6, 1), ("accel", 1, 3)):
        v = np.array([d[name] for d in draws])
        assert v.min() >= lo and v.max() <= hi and v.max() - v.min() > 0.8 * (hi - lo)
    assert all(isinstance(d["coils"], int) and isinstance(d["accel"], int) for d in draws)
    assert {d["accel"] for d in draws} == {1, 2, 3} and len({d["coils"] for d in draws}) == 15
    assert all(d["filter"] == "none" and d["combine"] == "sos" for d in draws)
    clipped = [parse_noise("mrkspace:0.1,coils=1-2,accel=2").draw_options(rng) for _ in range(50)]
    assert all(d["accel"] <= d["coils"] for d in clipped) and {d["coils"] for d in clipped} == {1, 2}
    # what a Scan records is the call's drawn spec, within the ranges
    img = Scan(np.ones((32, 32), np.float32), (1, 1))
    for seed in range(10):
        got = parse_noise(add_noise(img, spec, seed=seed).meta["noise"])
        opts = dict(got.options)
        assert 0.01 <= got.low == got.high <= 0.09 and 2 <= opts["coils"][0] <= 16
        assert 1 <= opts.get("zf", (1, 1))[0] <= 2 and opts.get("accel", (1, 1))[0] <= 3


def test_mixture_picks_every_member_uniformly():
    mix = parse_noise("gaussian:0.05|rician:0.05|mrkspace:0.05,coils=4")
    assert isinstance(mix, NoiseMix) and len(mix.members) == 3
    img = Scan(np.ones((16, 16), np.float32), (1, 1))
    kinds = [add_noise(img, mix, seed=s).meta["noise"].split(":")[0] for s in range(150)]
    counts = {k: kinds.count(k) for k in ("gaussian", "rician", "mrkspace")}
    assert all(25 <= c <= 75 for c in counts.values()), counts  # binomial(150, 1/3): 50 +- 5.8
    a = add_noise(img.array, mix, seed=9)
    assert np.array_equal(a, add_noise(img.array, mix, seed=9))


@pytest.mark.parametrize("bad, words", [
    ("mrkspace:0.03,coil=8", ["coil=8", "unknown", "coils=", "combine="]),
    ("mrkspace:0.03,coils=0", ["coils", "[1, 64]"]),
    ("mrkspace:0.03,coils=2.5", ["coils", "integer"]),
    ("mrkspace:0.03,coils=8-2", ["coils", "a <= b"]),
    ("mrkspace:0.03,pf=0.3", ["pf", "[0.5, 1]"]),
    ("mrkspace:0.03,zf=0.5", ["zf", "[1, 8]"]),
    ("mrkspace:0.03,zf=x", ["zf", "number"]),
    ("mrkspace:0.03,filter=gauss", ["filter", "none, hamming, hann, fermi"]),
    ("mrkspace:0.03,combine=mean", ["combine", "sos, adaptive"]),
    ("mrkspace:0.03,accel=4", ["accel", "coils"]),
    ("mrkspace:0.03,coils=1-2,accel=3", ["accel", "coils"]),
    ("mrkspace:0.03,coils=4,coils=8", ["repeated"]),
    ("mrkspace:0.03,coils", ["needs a value"]),
    ("mrkspace:abc", ["number"]),
    ("rician:0.03,coils=4", ["rician", "no options"]),
    ("rician:0.05|", ["mrkspace", "rician", "'|'"]),
    ("rician:0.05|salt:1", ["mrkspace", "gaussian"]),
])
def test_bad_options_name_the_option_and_the_valid_ones(bad, words):
    with pytest.raises(ValueError) as exc:
        parse_noise(bad)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_training_accepts_mixtures_but_not_lowdose_in_them():
    check_training_options("rician:0.01-0.09|mrkspace:0.01-0.09,coils=1-8", contrast_augment=0.5, coarse_augment=0.5)
    check_training_options("mrkspace:0.05,coils=8,accel=2", fine_augment=0.5)
    with pytest.raises(ValueError, match="lowdose.*mixture"):
        check_training_options("rician:0.05|lowdose:0.25")
    with pytest.raises(ValueError, match="reference_noise"):
        check_training_options("rician:0.05|mrkspace:0.05", reference_noise=0.01)


@pytest.mark.parametrize("dims", [2, 3])
def test_patch_sampler_trains_on_a_mixture(dims):
    from denoise.data import PatchSampler

    vol = np.zeros((24, 48, 48), np.float32)
    vol[:, 8:40, 10:38] = 0.8
    kw = dict(noise="rician:0.01-0.09|mrkspace:0.01-0.09,coils=1-8,zf=1-2", spatial_dims=dims, patch_size=16, seed=0)
    sampler = PatchSampler([vol], **kw)
    assert sampler.noise.kind == "mix"
    noisy, clean = sampler.batch(12)
    assert noisy.shape == clean.shape == (12, 1, *([16] * dims)) and noisy.dtype == np.float32
    assert np.isfinite(noisy).all() and (noisy >= 0).all() and not np.allclose(noisy, clean)
    again, _ = PatchSampler([vol], **kw).batch(12)
    assert np.array_equal(noisy, again)
    resid = (noisy - clean)[clean > 0.5]
    assert 0.005 < np.std(resid) < 0.2  # levels 0.01-0.09 (times sqrt(R) g: no acceleration here)


def test_acquired_coarser_samples_band_limited_images_and_rings_at_edges():
    """A coarser acquisition of an image whose detail fits its matrix is that image sampled on the
    coarse grid (a positive cosine within the coarse band, 2D and a stack alike); a constant keeps
    its value; a sharp edge overshoots (Gibbs), which block averaging never does."""
    import pytest

    from denoise.noise_mr import acquired_coarser

    yy, xx = np.mgrid[:96, :96]
    for f in (2, 3):
        img = 2.0 + np.cos(2 * np.pi * 3 * xx / 96) + 0.5 * np.sin(2 * np.pi * 5 * yy / 96)
        coarse = acquired_coarser(img, f)
        assert coarse.shape == (96 // f, 96 // f)
        assert np.allclose(coarse, img[::f, ::f], atol=1e-5)
        stack = acquired_coarser(np.stack([img, 3.0 * img]), f)
        assert np.allclose(stack[1], 3.0 * img[::f, ::f], atol=1e-4)
    assert np.allclose(acquired_coarser(np.full((64, 64), 7.0), 4), 7.0, atol=1e-5)
    edge = (xx >= 48).astype(np.float64)
    assert acquired_coarser(edge, 2).max() > 1.05
    with pytest.raises(ValueError, match="multiple"):
        acquired_coarser(np.ones((10, 12)), 4)


def test_reconstructed_blurs_the_signal_as_zero_filling_and_apodisation_do():
    """zf 1 without a filter returns the image; zero-filling by 2 and the apodisations remove fine
    detail (a one-pixel checkerboard, at the matrix's edge, is gone) but keep smooth anatomy and a
    constant; a stack and its slices alike."""
    from denoise.noise_mr import reconstructed

    rng = np.random.default_rng(0)
    img = 1.0 + rng.random((48, 40))
    assert np.allclose(reconstructed(img), img, atol=1e-5)
    yy, xx = np.mgrid[:48, :40]
    smooth = 1.0 + np.exp(-((yy - 24) ** 2 + (xx - 20) ** 2) / (2 * 8.0**2))
    checker = smooth + 0.2 * ((yy + xx) % 2)
    for zf, filt in ((2.0, "none"), (1.5, "hamming"), (1.0, "fermi")):
        out = reconstructed(checker, zf, filt)
        fine = lambda a: np.abs(np.diff(a, axis=-1)).mean()  # noqa: E731
        assert fine(out) < 0.5 * fine(checker)
        assert np.abs(reconstructed(smooth, zf, filt) - smooth).max() < 0.05
        assert np.allclose(reconstructed(np.full((32, 32), 3.0), zf, filt), 3.0, atol=1e-3)
    both = reconstructed(np.stack([checker, 2 * checker]), 2.0, "hamming")
    assert np.allclose(both[1], reconstructed(2 * checker, 2.0, "hamming"), atol=1e-5)
