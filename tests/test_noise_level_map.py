"""A noise-level map instead of a constant (issue #28 item 4): the estimator finds noise that varies
across the image, not noise that does not; mr-2d told the map denoises such scans better; `denoise
run` chooses it from the data, records it, and --continue redoes a scan run with another choice."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from conftest import SAMPLE

from denoise import load_model
from denoise.batch import UsageError, denoise_folder
from denoise.infer import denoise_array
from denoise.metrics import foreground_mask, psnr
from denoise.noise_level import SPREAD_FOR_MAP, noise_level, noise_level_map, noise_spread, with_noise_channel
from denoise.normalize import reference_intensity


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    """Six slices of the sample T1 (232 x 160), scaled to [0, 1000]."""
    a = nib.load(str(SAMPLE / "mr_t1_brain_slab.nii.gz")).get_fdata().T.astype(np.float32)[9:15]
    return a / reference_intensity(a) * 1000


def _rician(clean: np.ndarray, sigma: np.ndarray | float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(clean + sigma * rng.standard_normal(clean.shape) + 1j * sigma * rng.standard_normal(clean.shape)).astype(np.float32)


def _ramp(clean: np.ndarray, low: float, high: float) -> np.ndarray:
    """A noise sigma rising from ``low`` to ``high`` (fractions of 1000) from left to right."""
    return np.broadcast_to(np.linspace(low, high, clean.shape[-1]) * 1000, clean.shape)


def test_uniform_noise_reads_as_uniform_and_a_ramp_as_a_ramp(t1):
    for level in (0.05, 0.09):
        noisy = _rician(t1, level * 1000, seed=1)
        assert noise_spread(noisy, 64) < SPREAD_FOR_MAP, level
    sigma = _ramp(t1, 0.02, 0.10)
    noisy = _rician(t1, sigma, seed=2)
    assert noise_spread(noisy, 64) >= SPREAD_FOR_MAP
    z = 3
    m, spread = noise_level_map(noisy[z], 64)
    fg = foreground_mask(t1[z]) & (t1[z] > 0.3 * 1000)
    cols = np.where(fg.any(0))[0]
    left, right = cols[: len(cols) // 4], cols[-len(cols) // 4:]
    assert m[:, right][fg[:, right]].mean() > 1.5 * m[:, left][fg[:, left]].mean()  # truth: 3.3x across the object
    # in the networks' convention: the map's mean over the object is the constant estimate's
    assert m[fg].mean() == pytest.approx(noise_level(noisy[z], 64), rel=0.25)


def test_where_anatomy_not_noise_fills_the_finest_scale_no_map_is_made(t1):
    """At 1% noise the anatomy of most tiles outweighs the noise at the finest wavelet scale: their
    estimates would read the anatomy's texture as noise varying across the image."""
    noisy = _rician(t1, 10.0, seed=8)
    m, spread = noise_level_map(noisy[3], 64)
    assert spread == 1.0 and np.ptp(m) == 0
    assert noise_spread(noisy, 64) == 1.0
    assert m[0, 0] == pytest.approx(noise_level(noisy[3], 64))


def test_spatial_channel_is_the_map_and_the_constant_one_constant(t1):
    noisy = _rician(t1, _ramp(t1, 0.02, 0.10), seed=3)[:2, None]
    flat = with_noise_channel(noisy, patch=64)
    spatial = with_noise_channel(noisy, patch=64, spatial=True)
    assert spatial.shape == flat.shape == (2, 2, *t1.shape[1:])
    np.testing.assert_array_equal(spatial[:, 0], noisy[:, 0])
    assert np.ptp(flat[0, 1]) == 0 and np.ptp(spatial[0, 1]) > 0.3 * spatial[0, 1].mean()
    np.testing.assert_allclose(spatial[1, 1], noise_level_map(noisy[1, 0], 64)[0])


def test_mr2d_told_the_map_denoises_varying_noise_better_and_auto_chooses_it(t1):
    model = load_model("mr-2d", device="cpu")
    mask = foreground_mask(t1)
    noisy = _rician(t1, _ramp(t1, 0.02, 0.10), seed=4)
    scores = {}
    for mode in ("constant", "map", "auto"):
        details: dict = {}
        out = denoise_array(noisy, model, modality="MR", noise_level=mode, details=details)
        scores[mode] = psnr(t1, out, data_range=1000.0, mask=mask)
        assert details["noise_level"] == ("constant" if mode == "constant" else "map")
        assert details["noise_spread"] == pytest.approx(noise_spread(noisy, 64))
    assert scores["map"] > scores["constant"] + 0.1
    assert scores["auto"] == scores["map"]
    uniform: dict = {}
    denoise_array(_rician(t1, 50.0, seed=5), model, modality="MR", details=uniform)
    assert uniform["noise_level"] == "constant"
    with pytest.raises(ValueError, match="noise level"):
        denoise_array(noisy, model, noise_level="varying")


def test_models_without_an_mr_noise_channel_are_left_alone(t1):
    ct = load_model("ct-2d", device="cpu")
    assert ct.with_noise_level(t1, "map") == (ct, None)
    mr = load_model("mr-2d", device="cpu")
    fixed = mr.variant(sigma=0.05)
    assert fixed.with_noise_level(t1, "map") == (fixed, None)


def _manifest(out) -> dict[str, dict]:
    return {r["input"]: r for r in csv.DictReader(open(out / "manifest.csv"))}


def test_run_records_the_choice_and_continue_redoes_another(tmp_path, t1):
    src = tmp_path / "in"
    src.mkdir()
    varying = _rician(t1, _ramp(t1, 0.02, 0.10), seed=6)
    nib.save(nib.Nifti1Image(varying.T.copy(), np.diag([1.0, 1.0, 3.0, 1.0])), str(src / "mr_ramp.nii.gz"))
    nib.save(nib.Nifti1Image(_rician(t1, 50.0, seed=7).T.copy(), np.diag([1.0, 1.0, 3.0, 1.0])), str(src / "mr_flat.nii.gz"))
    out = tmp_path / "out"
    assert denoise_folder(src, out, model="mr-2d", device="cpu", progress=False)["ok"] == 2
    rows = _manifest(out)
    assert rows["mr_ramp.nii.gz"]["noise_level"] == "map" and float(rows["mr_ramp.nii.gz"]["noise_spread"]) >= SPREAD_FOR_MAP
    assert rows["mr_flat.nii.gz"]["noise_level"] == "constant" and float(rows["mr_flat.nii.gz"]["noise_spread"]) < SPREAD_FOR_MAP
    assert {r["model"] for r in rows.values()} == {"mr-2d"}
    s = denoise_folder(src, out, model="mr-2d", device="cpu", resume=True, noise_level="constant", progress=False)
    assert s["processed"] == 2  # another choice: redone
    rows = _manifest(out)
    assert {r["model"] for r in rows.values()} == {"mr-2d+constantnoise"}
    assert {r["noise_level"] for r in rows.values()} == {"constant"}
    s = denoise_folder(src, out, model="mr-2d", device="cpu", resume=True, noise_level="constant", progress=False)
    assert s["processed"] == 0
    with pytest.raises(UsageError, match="noise-level"):
        denoise_folder(src, tmp_path / "o2", model="nlm", noise_level="map", progress=False)
    with pytest.raises(UsageError, match="noise-level"):
        denoise_folder(src, tmp_path / "o3", model="mr-2d", noise_level="sometimes", progress=False)
