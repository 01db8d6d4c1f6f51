"""GainTuning with SURE (`denoise.gaintune`, `denoise adapt --method sure`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_adapt import _err, _phantom, _save

from denoise.adapt import adapt
from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig
from denoise.gaintune import Gained, background_sigma, sure_loss
from denoise.models import build_model
from denoise.selfsup import correlated_noise


class Smoother(torch.nn.Module):
    """A fixed 3x3 smoothing (a denoiser whose error is known only through the clean image)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="replicate", bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("rho", [0.0, 0.4])
def test_sure_estimates_the_error_against_the_clean_image(phantom_2d, rho):
    """Averaged over noise draws, SURE (told the noise's level and correlation) equals the true
    error over the tissue mask; told white noise when it is correlated, it misses it."""
    clean = torch.from_numpy(phantom_2d / phantom_2d.max() + 0.5)[None, None].repeat(4, 1, 1, 1)
    sigma, net = 0.05, Smoother()
    gen = torch.Generator().manual_seed(0)
    s, r = torch.full((4,), sigma), torch.full((4,), rho)
    sures, wrong, errors = [], [], []
    with torch.no_grad():
        for _ in range(40):
            y = clean + sigma * correlated_noise(tuple(clean.shape), rho, gen)
            errors.append(float(((net(y) - clean) ** 2).mean()))  # the mask is everything here (all > 4 sigma)
            sures.append(float(sure_loss(net, y, 0, s, r, 0.0, gen)))
            wrong.append(float(sure_loss(net, y, 0, s, torch.zeros(4), 0.0, gen)))
    true, est = np.mean(errors), np.mean(sures)
    assert abs(est - true) < 0.05 * true
    if rho > 0:
        assert abs(np.mean(wrong) - true) > 0.2 * true


def test_folded_gains_give_the_same_network_outputs():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16), context=1, noise_channel=True)
    net = build_model(cfg).double().eval()
    x = torch.rand(2, 4, 32, 32, dtype=torch.float64)
    plain = net(x)
    gained = Gained(net).double()
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(gained.gains) == len(convs) and any(isinstance(m, torch.nn.ConvTranspose2d) for m in convs)
    assert torch.allclose(gained(x), plain)  # gains start at 1
    with torch.no_grad():
        for g in gained.gains:
            g.copy_(0.5 + torch.rand(g.shape, dtype=g.dtype))
    hooked = gained(x)
    assert not torch.allclose(hooked, plain)
    folded = gained.fold()
    assert folded is net and all(p.requires_grad for p in folded.parameters())
    assert torch.allclose(folded(x), hooked, atol=1e-10)
    assert all(n in dict(folded.named_parameters()) for n in net.state_dict())  # same architecture, no extras


def test_background_sigma_reads_the_rician_air(phantom_2d, rng):
    clean = np.zeros((8, 96, 96), np.float32)
    clean[:, 16:80, 16:80] = phantom_2d + 200.0  # tissue in the middle, air around it
    sigma = 20.0
    noisy = np.abs(clean + rng.normal(0, sigma, clean.shape) + 1j * rng.normal(0, sigma, clean.shape)).astype(np.float32)
    est = background_sigma(noisy)
    assert est is not None and abs(est - sigma) < 0.1 * sigma
    masked = noisy.copy()
    masked[clean == 0] = 0.0  # a zeroed background holds no noise to read
    assert background_sigma(masked) is None


def test_sure_gains_make_a_poor_start_better_and_keep_its_architecture(tmp_path, phantom_2d, rng):
    """From an untrained network (it adds structure), learning only the gains with SURE on the noisy
    volume itself lowers the error against the hidden clean volume; the checkpoint is the start's
    architecture with folded weights, loaded through the safe path."""
    torch.manual_seed(0)
    cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16), context=1, noise_channel=True)
    init = save_checkpoint(tmp_path / "init" / "tiny.pt", build_model(cfg), {
        "name": "tiny", "model": dataclasses.asdict(cfg), "normalization": {"kind": "percentile"},
        "train": {"patch_size": 32}, "noise": "rician:0.05"})
    clean = _phantom(phantom_2d, z=16)
    sigma = 0.08 * clean.max()
    noisy = (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)
    data = _save(tmp_path / "in" / "v_mr.nii.gz", noisy).parent
    out = tmp_path / "sure.pt"
    r = adapt(data, out, init=init, method="sure", max_steps=150, eval_every=30, patience=50, progress=False,
              noise_sigma=sigma)
    assert r["method"] == "sure" and "sigma given" in r["noise_model"] and "white" in r["noise_model"]
    assert r["best_val_loss"] < r["start_val_loss"]
    assert _err(out, noisy, clean) < 0.8 * _err(init, noisy, clean)
    start, adapted = load_checkpoint(init)[0], load_checkpoint(out)[0]  # weights_only=True path
    assert list(start.state_dict()) == list(adapted.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), adapted.state_dict().values()))
    assert "GainTuning" in out.with_suffix(".md").read_text()


def test_a_3d_slab_model_tunes_its_gains_too(tmp_path, phantom_2d, rng):
    cfg = ModelConfig(kind="dae", spatial_dims=3, channels=(4, 8), slab=True, context=1, noise_channel=True)
    init = save_checkpoint(tmp_path / "slab.pt", build_model(cfg), {"name": "slab", "model": dataclasses.asdict(cfg),
                           "normalization": {"kind": "percentile"}, "train": {"patch_size": 32, "patch_depth": 4},
                           "noise": "rician:0.05"})
    clean = _phantom(phantom_2d, z=16)
    noisy = (clean + rng.normal(0, 0.05 * clean.max(), clean.shape)).astype(np.float32)
    data = _save(tmp_path / "in" / "s_mr.nii.gz", noisy).parent
    r = adapt(data, tmp_path / "g3.pt", init=init, method="sure", max_steps=6, eval_every=3, progress=False)
    assert r["method"] == "sure" and r["steps"] == 6 and np.isfinite(r["best_val_loss"])
    start, adapted = load_checkpoint(init)[0], load_checkpoint(tmp_path / "g3.pt")[0]
    assert list(start.state_dict()) == list(adapted.state_dict())
