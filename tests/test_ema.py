"""TrainConfig.ema: an exponential moving average of the weights is what gets validated and saved."""

import pytest

from denoise.checkpoint import load_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.scan import Scan
from denoise.train import fit

MODEL = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16))


def _cfg(**kw) -> TrainConfig:
    base = dict(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=25, epochs=6, lr=3e-3,
                val_patches=8, device="cpu", early_stop_patience=10, val_scans=(1,))
    return TrainConfig(**{**base, **kw})


def _scans(phantom_3d):
    return [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_ema_checkpoints_carry_the_average_learn_and_resume(tmp_path, phantom_3d):
    hist = fit(MODEL, _cfg(ema=0.9), _scans(phantom_3d), tmp_path, name="ema", progress=False)
    net, info, payload = load_checkpoint(tmp_path / "last.pt")
    assert info["train"]["ema"] == 0.9
    assert int(payload["ema_n_averaged"]) == 6 * 25  # one update per optimiser step
    raw = payload["raw_state"]
    assert _max_diff(net.state_dict(), raw) > 1e-4  # the saved weights are not the last step's
    assert max(h["val_psnr"] for h in hist) > hist[0]["val_psnr_noisy"] + 0.3  # the average denoises
    # resume: the average goes on from where it was, the raw weights from theirs
    fit(MODEL, _cfg(ema=0.9, epochs=7), _scans(phantom_3d), tmp_path, name="ema", resume=tmp_path / "last.pt",
        progress=False)
    _, _, payload2 = load_checkpoint(tmp_path / "last.pt")
    assert int(payload2["ema_n_averaged"]) == 7 * 25


def test_a_vanishing_decay_saves_the_last_weights(tmp_path, phantom_3d):
    fit(MODEL, _cfg(ema=1e-9, epochs=1), _scans(phantom_3d), tmp_path, name="ema0", progress=False)
    net, _, payload = load_checkpoint(tmp_path / "last.pt")
    assert _max_diff(net.state_dict(), payload["raw_state"]) < 1e-6


def test_ema_resume_needs_a_checkpoint_that_kept_the_raw_weights(tmp_path, phantom_3d):
    fit(MODEL, _cfg(epochs=1), _scans(phantom_3d), tmp_path, name="plain", progress=False)
    _, _, payload = load_checkpoint(tmp_path / "last.pt")
    assert "raw_state" not in payload
    with pytest.raises(ValueError, match="without ema"):
        fit(MODEL, _cfg(ema=0.9, epochs=2), _scans(phantom_3d), tmp_path, name="plain", resume=tmp_path / "last.pt",
            progress=False)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ema_decay_is_validated(bad):
    with pytest.raises(ValueError, match="ema"):
        _cfg(ema=bad)

