import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.infer import PRETRAINED_DIR, denoise_scan, load_model
from denoise.metrics import foreground_mask, psnr
from denoise.models import ClassicalDenoiser
from denoise.noise import add_noise
from denoise.normalize import reference_intensity
from denoise.scan import Scan
from denoise.train import fit


def _scans(phantom_3d):
    return [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]


def test_short_training_raises_validation_psnr_and_checkpoint_round_trips(tmp_path, phantom_3d):
    model_cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16))
    train_cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=25, epochs=6,
                            lr=3e-3, val_patches=8, device="cpu", early_stop_patience=10, val_scans=(1,))
    hist = fit(model_cfg, train_cfg, _scans(phantom_3d), tmp_path, name="tiny", progress=False)
    assert hist[-1]["val_psnr"] > hist[0]["val_psnr"]
    assert max(h["val_psnr"] for h in hist) > hist[0]["val_psnr_noisy"] + 0.3
    model = load_model(tmp_path / "best.pt", device="cpu")
    assert model.info["noise"] == "gaussian:0.1" and model.info["model"]["channels"] == [8, 16]
    assert (model.info["data"]["train_scans"], model.info["data"]["val_scans"]) == ([0, 2], [1])  # the chosen split
    net2, _, _ = load_checkpoint(tmp_path / "best.pt")
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(model.net.predict(x), net2.predict(x))
    # resume continues from last.pt, not from scratch; here with batches drawn by two worker processes
    hist2 = fit(model_cfg, TrainConfig(**{**train_cfg.__dict__, "epochs": 7, "num_workers": 2}), _scans(phantom_3d),
                tmp_path, name="tiny", resume=tmp_path / "last.pt", progress=False)
    assert [h["epoch"] for h in hist2] == [0, 1, 2, 3, 4, 5, 6]
    assert hist2[-1]["val_psnr"] > hist2[-1]["val_psnr_noisy"]


def test_cpu_bfloat16_training_learns_and_keeps_float32_weights(tmp_path, phantom_3d, monkeypatch):
    """cpu_bf16 runs the forward pass in bfloat16 (autocast): it must still learn, and the weights,
    optimiser state and checkpoint stay float32 (inference is unchanged)."""
    import denoise.train as train_mod
    from denoise.models import VAE

    seen, inner = set(), VAE.training_loss  # the VAE's own loss, which fit calls each step

    def spy(*args, **kw):
        seen.add((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return inner(*args, **kw)

    monkeypatch.setattr(VAE, "training_loss", spy)
    monkeypatch.setattr(train_mod, "_native_bf16", lambda: None)  # capability unknown: bf16 as asked
    model_cfg = ModelConfig(kind="vae", spatial_dims=2, channels=(8, 16), latent_channels=4, residual=False)
    train_cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=25, epochs=5, lr=3e-3,
                            val_patches=8, device="cpu", early_stop_patience=10, val_scans=(1,), cpu_bf16=True)
    hist = fit(model_cfg, train_cfg, _scans(phantom_3d), tmp_path, name="bf16", progress=False)
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert max(h["val_psnr"] for h in hist) > hist[0]["val_psnr"]
    net, info, _ = load_checkpoint(tmp_path / "best.pt")
    assert info["train"]["cpu_bf16"] is True
    assert seen == {(True, torch.bfloat16)}
    assert {p.dtype for p in net.parameters()} == {torch.float32}


def test_cpu_bf16_falls_back_to_float32_on_a_cpu_without_bfloat16(tmp_path, phantom_3d, monkeypatch):
    """Emulated bfloat16 is many times slower (4.3 s against 0.5 s per mr-2d step measured): on a CPU
    known to lack it, cpu_bf16 trains in float32 and says so."""
    import denoise.train as train_mod
    from denoise.models import ConvAutoencoder

    seen, inner = set(), ConvAutoencoder.training_loss  # the DAE's own loss, which fit calls each step

    def spy(*args, **kw):
        seen.add(torch.is_autocast_enabled("cpu"))
        return inner(*args, **kw)

    monkeypatch.setattr(ConvAutoencoder, "training_loss", spy)
    monkeypatch.setattr(train_mod, "_native_bf16", lambda: False)
    model_cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8))
    train_cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=4, steps_per_epoch=3, epochs=1,
                            val_patches=4, device="cpu", val_scans=(1,), cpu_bf16=True)
    fit(model_cfg, train_cfg, _scans(phantom_3d), tmp_path, name="fallback", progress=False)
    assert seen == {False}


def test_bf16_capability_check_reads_the_cpu_and_survives_a_torch_without_it(monkeypatch):
    """The warning for a CPU without bfloat16 arithmetic uses torch.cpu internals: either check
    counts, and a torch that lacks them gives "unknown" (None) instead of an AttributeError."""
    from denoise.train import _native_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert _native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert _native_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert _native_bf16() is None


def test_pickled_object_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    net = torch.nn.Linear(2, 2)
    bad = tmp_path / "evil.pt"
    torch.save({"format": "denoise-checkpoint-1", "config": "{}", "state_dict": net.state_dict(), "x": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(bad)
    with open(tmp_path / "raw.pt", "wb") as fh:
        pickle.dump({"a": Evil()}, fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "raw.pt")


def test_save_is_atomic_and_plain(tmp_path):
    from denoise.models import build_model

    net = build_model(ModelConfig(channels=(4, 8)))
    info = {"model": {"kind": "dae", "channels": [4, 8]}}
    path = save_checkpoint(tmp_path / "m.pt", net, info)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    torch.load(str(path), weights_only=True)
    before = path.read_bytes()
    # a save interrupted while writing (disk full, killed) leaves the old checkpoint whole
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:100])  # half written
        raise OSError("no space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "save", dying_save)
        with pytest.raises(OSError):
            save_checkpoint(path, build_model(ModelConfig(channels=(4, 8))), info)
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))  # nor a half temporary left
    load_checkpoint(path)


def test_denoise_scan_keeps_units_and_geometry(phantom_3d):
    scan = Scan(phantom_3d, (2, 1, 1), np.diag([1, 1, 2, 1.0]), "MR", {"x": 1})
    noisy = add_noise(scan, "gaussian:0.1", seed=0)
    den = denoise_scan(noisy, ClassicalDenoiser("tv", sigma=0.1))
    assert den.array.shape == scan.array.shape and den.spacing == scan.spacing
    np.testing.assert_array_equal(den.affine, scan.affine)
    rng = reference_intensity(phantom_3d)
    assert psnr(phantom_3d, den.array, data_range=rng) > psnr(phantom_3d, noisy.array, data_range=rng)


def test_3d_sliding_window_has_no_seams(phantom_3d):
    from denoise.infer import LearnedDenoiser
    from denoise.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(spatial_dims=3, channels=(4, 8)))
    info = {"model": {"kind": "dae", "spatial_dims": 3}}
    vol = np.random.default_rng(0).random((16, 24, 24)).astype(np.float32)
    whole = LearnedDenoiser(net, info, device="cpu", tile=64).denoise_batch(vol[None])[0]
    tiled = LearnedDenoiser(net, info, device="cpu", tile=(8, 12, 12), overlap=0.5).denoise_batch(vol[None])[0]
    # the receptive field makes tile borders differ slightly; Gaussian blending keeps them small
    assert np.abs(whole - tiled).mean() < 0.05 * np.abs(whole).mean()
    diffs = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    assert diffs.max() < 3 * np.median(diffs)


@pytest.mark.skipif(not list(PRETRAINED_DIR.glob("*.pt")), reason="no shipped models yet")
def test_every_shipped_model_loads_and_raises_psnr_on_a_noisy_sample_scan():
    from conftest import SAMPLE

    from denoise.io import read_scan
    from denoise.metrics import CT_DATA_RANGE

    mr = read_scan(SAMPLE / "mr_t1_brain_slab.nii.gz")
    # The sample CT carries ~18 HU of real noise, so it cannot be the clean reference: use a clean
    # HU phantom (air, fat, soft tissue, contrast, bone) at 1.4 mm instead.
    y, x = np.mgrid[-1:1:256j, -1:1:256j]
    hu = np.full((256, 256), -1000.0, np.float32)
    hu[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = -100
    hu[(x / 0.8) ** 2 + (y / 0.6) ** 2 < 1] = 40
    hu[((x - 0.3) / 0.15) ** 2 + (y / 0.15) ** 2 < 1] = 200
    hu[((x + 0.3) / 0.1) ** 2 + ((y + 0.2) / 0.1) ** 2 < 1] = 700
    ct = Scan(np.stack([hu] * 3), (2.0, 1.4, 1.4), modality="CT")
    cases = {"MR": (mr, "rician:0.09"), "CT": (ct, "lowdose:0.25")}
    for pt in sorted(PRETRAINED_DIR.glob("*.pt")):
        model = load_model(pt.stem, device="cpu")
        modality = "CT" if model.normalization is not None and model.normalization.kind == "window" else "MR"
        clean, spec = cases[modality]
        noisy = add_noise(clean, spec, seed=0)
        den = denoise_scan(noisy, model)
        mask = foreground_mask(clean.array)
        rng = CT_DATA_RANGE if modality == "CT" else reference_intensity(clean.array)
        before = psnr(clean.array, noisy.array, data_range=rng, mask=mask)
        after = psnr(clean.array, den.array, data_range=rng, mask=mask)
        assert after > before, f"{pt.stem}: {after:.2f} dB after vs {before:.2f} dB before"


@pytest.mark.timeout(300)
def test_torchrun_ddp_on_cpu(tmp_path, tiny_training_set):
    """Two gloo processes under torchrun train together and rank 0 writes the checkpoint."""
    import subprocess
    import sys

    data, cfg = tiny_training_set
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "denoise.cli",
           "train", "--data", str(data), "--out", str(tmp_path / "ddp"), "--config", str(cfg), "--epochs", "2",
           "--steps-per-epoch", "3", "--quiet", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-2000:]  # the head names a rank's own error
    model = load_model(tmp_path / "ddp" / "best.pt", device="cpu")
    assert model.info["model"]["channels"] == [4, 8]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_refused_with_the_count_not_spread(bad):
    """A NaN (masked NIfTI maps) would spread through every convolution window it touches; the
    Python entry points refuse it with the number of bad values, as the NIfTI reader does."""
    from denoise.infer import denoise_array, denoise_scan
    from denoise.models import ClassicalDenoiser

    a = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    a[0, :3, :2] = bad
    with pytest.raises(ValueError, match="6 NaN/inf"):
        denoise_array(a, ClassicalDenoiser("gaussian"))
    with pytest.raises(ValueError, match="NaN/inf"):
        denoise_scan(Scan(a, (1, 1, 1), modality="MR"), ClassicalDenoiser("gaussian"))


def test_ct_values_outside_the_model_range_pass_through():
    """Out-of-field padding (-3024 HU) and metal reach the model clipped to its range (no
    artefacts from unseen intensities) and come back exactly as they were: the model's output over
    a flat clipped region is no denoising of anything (on real CT it painted noise-like texture
    into the padding); values inside the range get the model's output."""
    from denoise.infer import denoise_array
    from denoise.models.base import Denoiser
    from denoise.normalize import Normalization

    class Shift(Denoiser):  # records what it is shown; "denoises" by a constant correction
        normalization = Normalization(kind="window", low=-1000, high=1000)

        def denoise_batch(self, batch):
            self.seen = (float(batch.min()), float(batch.max()))
            return batch + 0.005

    hu = np.full((1, 32, 32), 40.0, np.float32)
    hu[:, :4] = -3024.0   # outside the scan field of view
    hu[:, 10, 10] = 8000.0  # metal
    den = Shift()
    out = denoise_array(hu, den, modality="CT")
    lo, hi = den.normalization.model_range()
    assert den.seen == pytest.approx((lo, hi))  # clipped to the range, not beyond
    assert lo < 0 and hi > 1  # air noise and bone still fit
    inside = (hu > -1200) & (hu < 3000)
    np.testing.assert_allclose(out[inside], hu[inside] + 0.005 * 2000, atol=1e-2)
    assert np.array_equal(out[~inside], hu[~inside])  # padding and metal unchanged
    assert np.array_equal(hu[:, :4], np.full((1, 4, 32), -3024.0))  # the input is not modified


@pytest.mark.parametrize("dims", [2, 3])
def test_tta_output_is_flip_equivariant(dims):
    """The self-ensemble commutes with in-plane flips (a single untrained network does not), in 2D
    and 3D."""
    from denoise.infer import LearnedDenoiser
    from denoise.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(spatial_dims=dims, channels=(4, 8)))
    info = {"model": {"kind": "dae", "spatial_dims": dims}}
    x = np.random.default_rng(0).random((2, *([12] * (dims - 2)), 16, 16)).astype(np.float32)
    for axes in ((-1,), (-2,), (-2, -1)):
        for tta, equal in [(True, True), (False, False)]:
            den = LearnedDenoiser(net, info, device="cpu", tta=tta, tile=32)
            a, b = np.flip(den.denoise_batch(x), axes), den.denoise_batch(np.ascontiguousarray(np.flip(x, axes)))
            assert np.allclose(a, b, atol=1e-5) == equal


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (2, 9, 15)])
def test_tta_cancels_a_sub_pixel_phase_pattern_on_odd_and_even_sizes(shape):
    """A pixel-unshuffle network's error pattern depends on each pixel's position modulo 2 in the
    array it is given; the ensemble shows every pixel in all four phases, so such a pattern
    cancels exactly, also on odd lengths (where a flip alone keeps a pixel's phase)."""
    from denoise.infer import flip_ensemble

    def forward(x):  # identity plus a pattern fixed to the array's own pixel grid
        i, j = np.indices(x.shape[-2:])
        pattern = 0.1 * ((-1.0) ** i + 2 * (-1.0) ** j + 3 * (-1.0) ** (i + j))
        return x[:, 0].numpy() + pattern.astype(np.float32)

    x = torch.from_numpy(np.random.default_rng(1).random((2, 1, *shape)).astype(np.float32))
    assert np.abs(forward(x) - x[:, 0].numpy()).max() > 0.5
    np.testing.assert_allclose(flip_ensemble(forward, x), x[:, 0].numpy(), atol=1e-6)


def test_val_scans_choose_the_validation_scans():
    from denoise.train import split_scans

    scans = [Scan(np.zeros((2, 8, 8)), (1, 1, 1), modality="MR") for _ in range(4)]
    assert split_scans(scans, 0.25, 0, (3,)) == ([0, 1, 2], [3])
    assert split_scans(scans, 0.25, 0, (2, 0)) == ([1, 3], [0, 2])
    tr, va = split_scans(scans, 0.25, 0)  # default: a seeded random quarter, still by scan
    assert len(va) == 1 and sorted(tr + va) == [0, 1, 2, 3]
    for bad in ((4,), (0, 1, 2, 3)):
        with pytest.raises(ValueError, match="val_scans"):
            split_scans(scans, 0.25, 0, bad)
    with pytest.raises(ValueError, match="distinct"):
        TrainConfig(val_scans=(1, 1))
    assert TrainConfig(val_scans=[2]).val_scans == (2,)  # a YAML / JSON list


def test_training_sweeps_the_temporaries_a_killed_run_left_and_nothing_else(tmp_path, phantom_3d):
    """Checkpoints are written under random temporary names (denoise.atomic); a run killed during a
    save leaves one behind, which the next run into the folder removes, keeping anything else."""
    left = [tmp_path / ".best.pt.0a1b2c3d.tmp", tmp_path / ".last.pt.12345678.tmp", tmp_path / ".metrics.csv.abcdef01.tmp"]
    kept = [tmp_path / "notes.txt", tmp_path / ".best.pt.notes", tmp_path / ".other.pt.0a1b2c3d.tmp"]
    for p in left + kept:
        p.write_bytes(b"x" * 64)
    train_cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=4, steps_per_epoch=2, epochs=1,
                            val_patches=4, device="cpu", val_scans=(1,))
    fit(ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8)), train_cfg, _scans(phantom_3d), tmp_path, progress=False)
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
    assert (tmp_path / "best.pt").exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p not in kept]
