"""`denoise adapt`: learning from noisy scans alone, on tiny phantoms with a tiny model."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import tree_hash

from denoise.adapt import adapt
from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.cli import main
from denoise.config import ModelConfig
from denoise.infer import denoise_array, load_model
from denoise.models import build_model

TINY = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16), context=1, noise_channel=True)


@pytest.fixture
def tiny_init(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "init" / "tiny.pt"
    save_checkpoint(path, build_model(TINY), {"name": "tiny", "model": dataclasses.asdict(TINY),
                                             "normalization": {"kind": "percentile"},
                                             "train": {"patch_size": 32}, "noise": "rician:0.05"})
    return path


def _phantom(phantom_2d, z=12):
    vol = np.stack([np.roll(phantom_2d, s, axis=1) for s in range(z)]) + 50.0
    return vol.astype(np.float32)  # (z, 64, 64)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr).T.copy(), np.eye(4)), str(path))
    return path


def _err(model_path, noisy, clean):
    out = denoise_array(noisy, load_model(model_path, device="cpu"), modality="MR")
    return float(np.mean((out - clean) ** 2))


def test_noise2noise_on_repeats_lowers_the_error_against_the_hidden_clean_phantom(tmp_path, tiny_init, phantom_2d, rng):
    clean = _phantom(phantom_2d)
    sigma = 0.08 * clean.max()
    repeats = np.stack([clean + rng.normal(0, sigma, clean.shape) for _ in range(4)]).astype(np.float32)
    data = tmp_path / "in"
    _save(data / "series_mr.nii.gz", repeats)
    before = tree_hash(data)
    r = adapt(data, tmp_path / "out" / "n2n.pt", init=tiny_init, max_steps=400, eval_every=40, patience=50,
              lr=2e-3, progress=False)
    assert tree_hash(data) == before  # the input is never modified
    assert r["method"] == "n2n" and r["pairs"] == 12 and r["repeat_scans"] == 1
    noisy = repeats[0]
    e_start, e_after = _err(tiny_init, noisy, clean), _err(tmp_path / "out" / "n2n.pt", noisy, clean)
    e_noisy = float(np.mean((noisy - clean) ** 2))
    assert e_after < 0.8 * e_start and e_after < 0.8 * e_noisy
    assert r["best_val_loss"] < r["start_val_loss"]
    # `denoise bench` takes the adapted checkpoint like any model
    _save(tmp_path / "clean" / "c_mr.nii.gz", clean)
    bench = tmp_path / "bench"
    assert main(["bench", "--data", str(tmp_path / "clean"), "--noise", "rician:0.05", "--methods",
                 f"noisy,{tmp_path / 'out' / 'n2n.pt'}", "--out", str(bench), "--quiet"]) == 0
    rows = (bench / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and "n2n" in rows[2]


def test_blind_spot_on_one_noisy_volume_lowers_the_error_and_loads_safely(tmp_path, tiny_init, phantom_2d, rng):
    clean = _phantom(phantom_2d, z=16)
    noisy = (clean + rng.normal(0, 0.08 * clean.max(), clean.shape)).astype(np.float32)
    data = tmp_path / "patient_jane_doe"
    _save(data / "jane_doe_t1_mr.nii.gz", noisy)
    out = tmp_path / "bs.pt"
    r = adapt(data, out, init=tiny_init, method="blindspot", max_steps=300, eval_every=30, patience=50, lr=1e-3,
              progress=False)
    assert r["method"] == "blindspot" and r["radius"] in (0, 1)
    assert _err(out, noisy, clean) < _err(tiny_init, noisy, clean)
    net, info, _ = load_checkpoint(out)  # weights_only=True path
    assert info["adapt"]["steps"] == 300 and info["init"] == "tiny.pt"
    text = json.dumps(info) + out.with_suffix(".md").read_text()
    assert "jane" not in text.lower()  # no file or folder names (they may name the patient)
    assert "Research use only" in out.with_suffix(".md").read_text()
    # the adapted checkpoint runs like any model
    res = tmp_path / "denoised"
    assert main(["run", "-i", str(data), "-o", str(res), "-m", str(out), "--quiet"]) == 0
    assert list(res.rglob("*.nii.gz"))


def test_recorrupted_pairs_from_one_volume_lower_the_error_when_the_noise_is_white(tmp_path, tiny_init, phantom_2d, rng):
    """R2R on a volume with white Gaussian noise (its level estimated from the volume) learns to
    denoise from a random start."""
    clean = _phantom(phantom_2d, z=16)
    noisy = (clean + rng.normal(0, 0.08 * clean.max(), clean.shape)).astype(np.float32)
    data = _save(tmp_path / "in" / "v_mr.nii.gz", noisy).parent
    out = tmp_path / "r2r.pt"
    r = adapt(data, out, init=tiny_init, method="r2r", max_steps=300, eval_every=30, patience=50, lr=1e-3, progress=False)
    assert r["method"] == "r2r" and "noise sigma" in r["noise_model"]
    assert _err(out, noisy, clean) < _err(tiny_init, noisy, clean)


def test_a_measured_noise_level_replaces_the_estimate(tmp_path, tiny_init, phantom_2d, rng):
    clean = _phantom(phantom_2d, z=16)
    noisy = (clean + rng.normal(0, 40.0, clean.shape)).astype(np.float32)
    data = _save(tmp_path / "in" / "v_mr.nii.gz", noisy).parent
    r = adapt(data, tmp_path / "m.pt", init=tiny_init, method="r2r", max_steps=2, eval_every=1, progress=False,
              noise_sigma=40.0, noise_corr=0.3)
    from denoise.normalize import Normalization

    scale = Normalization().params(noisy)[1]
    assert f"noise sigma {40.0 / scale:.4g}" in r["noise_model"] and "correlation 0.30" in r["noise_model"]


def test_a_run_that_only_gets_worse_keeps_the_starting_weights(tmp_path, tiny_init, phantom_2d, rng):
    clean = _phantom(phantom_2d)
    repeats = np.stack([clean + rng.normal(0, 0.05 * clean.max(), clean.shape) for _ in range(3)]).astype(np.float32)
    data = _save(tmp_path / "in" / "s_mr.nii.gz", repeats).parent
    out = tmp_path / "bad.pt"
    r = adapt(data, out, init=tiny_init, max_steps=40, eval_every=20, lr=50.0, progress=False)  # a destructive step size
    assert r["best_step"] == 0 and r["best_val_loss"] == r["start_val_loss"]
    start, adapted = load_checkpoint(tiny_init)[0], load_checkpoint(out)[0]
    for a, b in zip(start.state_dict().values(), adapted.state_dict().values()):
        assert torch.equal(a, b)


def test_a_3d_slab_model_adapts_too(tmp_path, phantom_2d, rng):
    cfg = ModelConfig(kind="dae", spatial_dims=3, channels=(4, 8), slab=True, context=1, noise_channel=True)
    init = save_checkpoint(tmp_path / "slab.pt", build_model(cfg), {"name": "slab", "model": dataclasses.asdict(cfg),
                           "normalization": {"kind": "percentile"}, "train": {"patch_size": 32, "patch_depth": 4},
                           "noise": "rician:0.05", "inference": {"isotropic_model": "mr-2d"}})
    clean = _phantom(phantom_2d)
    repeats = np.stack([clean + rng.normal(0, 0.05 * clean.max(), clean.shape) for _ in range(2)]).astype(np.float32)
    data = _save(tmp_path / "in" / "s_mr.nii.gz", repeats).parent
    r = adapt(data, tmp_path / "a3.pt", init=init, max_steps=6, eval_every=3, progress=False)
    assert r["method"] == "n2n" and r["steps"] == 6 and r["patch"] == 32
    model = load_model(tmp_path / "a3.pt", device="cpu")
    assert model.spatial_dims == 3 and model.isotropic is None  # the adapted slab network is used everywhere
    assert denoise_array(clean, model).shape == clean.shape


def _refusal(capsys, args):
    code = main(["adapt", *map(str, args), "--quiet"])
    return code, capsys.readouterr().err


def test_refusals_exit_2_with_the_reason(tmp_path, tiny_init, phantom_2d, rng, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _refusal(capsys, ["-i", empty, "-o", tmp_path / "a.pt", "--init", tiny_init])
    assert code == 2 and "no usable scans" in err
    small = _save(tmp_path / "small" / "s_mr.nii.gz", rng.normal(100, 5, (4, 40, 40))).parent
    code, err = _refusal(capsys, ["-i", small, "-o", tmp_path / "a.pt", "--init", tiny_init, "--method", "r2r"])
    assert code == 2 and "too little data" in err and "at least 8" in err
    single = _save(tmp_path / "single" / "s_mr.nii.gz", _phantom(phantom_2d)).parent
    code, err = _refusal(capsys, ["-i", single, "-o", tmp_path / "a.pt", "--init", tiny_init, "--method", "n2n"])
    assert code == 2 and "no repeated acquisitions" in err
    code, err = _refusal(capsys, ["-i", single, "-o", tmp_path / "a.pt", "--init", tiny_init])  # auto: single scans
    assert code == 2 and "adapt needs repeats" in err and "--method r2r" in err
    assert not (tmp_path / "a.pt").exists()
    code, err = _refusal(capsys, ["-i", single, "-o", single / "inside.pt", "--init", tiny_init])
    assert code == 2 and "never modifies" in err
    (tmp_path / "exists.pt").write_bytes(b"x")
    code, err = _refusal(capsys, ["-i", single, "-o", tmp_path / "exists.pt", "--init", tiny_init])
    assert code == 2 and "--overwrite" in err
    code, err = _refusal(capsys, ["-i", single, "-o", tmp_path / "b.pt", "--init", tiny_init, "--minutes", "0"])
    assert code == 2 and "minutes must be above 0" in err and not (tmp_path / "b.pt").exists()
    for flag, value, words in (("--noise-sigma", "0", "positive noise std"), ("--noise-sigma", "-3", "positive noise std"),
                               ("--noise-sigma", "nan", "positive noise std"), ("--noise-corr", "0.9", "from 0 (white) to 0.7"),
                               ("--noise-corr", "-0.1", "from 0 (white) to 0.7")):
        code, err = _refusal(capsys, ["-i", single, "-o", tmp_path / "b.pt", "--init", tiny_init, "--method", "sure",
                                      flag, value])
        assert code == 2 and flag in err and words in err and value in err, (flag, value, err)
        assert not (tmp_path / "b.pt").exists()


def test_modality_mismatch_with_init_is_refused(tmp_path, phantom_2d, capsys):
    ct = _phantom(phantom_2d) - 1000.0
    img = nib.Nifti1Image(ct.T.copy(), np.eye(4))
    data = tmp_path / "ct"
    data.mkdir()
    nib.save(img, str(data / "chest_ct.nii.gz"))
    code, err = _refusal(capsys, ["-i", data, "-o", tmp_path / "a.pt", "--init", "mr-2d"])
    assert code == 2 and "modality mismatch" in err
