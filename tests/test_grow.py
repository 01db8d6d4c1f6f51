"""Growing a trained DAE (denoise.models.grow): same output at the start, and the copies learn apart."""

import dataclasses

import pytest
import torch

from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.models import build_model
from denoise.models.grow import grow_state
from denoise.scan import Scan
from denoise.train import fit


def _trained_like(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model with random (not default-initialised) weights, biases and PReLU slopes."""
    torch.manual_seed(seed)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.double().eval()  # float64: the comparisons test the algebra, not float32 rounding


def _input(cfg: ModelConfig, context: int, gen: torch.Generator, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(stack of 1 + 2 context slices + noise channel, the same centre slices and noise with one
    slice fewer per side than ``context``)."""
    sz = [size] * cfg.spatial_dims
    slices = torch.rand(2, 1 + 2 * context, *sz, generator=gen, dtype=torch.float64)
    noise = torch.full((2, 1, *sz), 0.05, dtype=torch.float64)
    inner = slices[:, context - cfg.context : context + cfg.context + 1]
    return torch.cat([slices, noise], 1), torch.cat([inner, noise], 1)


@pytest.mark.parametrize("old, changes", [
    (ModelConfig(spatial_dims=2, channels=(8, 16, 32), context=1, noise_channel=True, shuffle=2),
     dict(context=2, channels=(12, 16, 40))),
    (ModelConfig(spatial_dims=3, channels=(4, 8, 16), noise_channel=True, shuffle=2), dict(channels=(6, 12, 20))),
    (ModelConfig(spatial_dims=2, channels=(4, 8)), dict(channels=(7, 9))),
    # a full-resolution tail added (zero output convolution) with wider levels and more context
    (ModelConfig(spatial_dims=2, channels=(8, 16), context=1, noise_channel=True, shuffle=2),
     dict(tail=6, context=2, channels=(8, 20))),
])
def test_grown_model_computes_the_same_output(old, changes):
    new = dataclasses.replace(old, **changes)
    net = _trained_like(old)
    grown = build_model(new).double().eval()
    grown.load_state_dict(grow_state(net.state_dict(), old, new))
    gen = torch.Generator().manual_seed(1)
    big, small = _input(old, new.context, gen)
    if not old.noise_channel:
        big, small = big[:, :-1], small[:, :-1]
    with torch.no_grad():
        ref, out = net(small), grown(big)
    assert ref.abs().max() > 0.1  # a non-trivial function
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    # the added outer slices really are ignored at the start, whatever they hold
    if new.context > old.context:
        big2 = big.clone()
        big2[:, 0] = torch.rand(big2[:, 0].shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(grown(big2), ref, rtol=1e-9, atol=1e-9)


def test_copied_channels_receive_different_gradients():
    old = ModelConfig(spatial_dims=2, channels=(4, 8))
    new = dataclasses.replace(old, channels=(8, 8))
    grown = build_model(new).double()
    grown.load_state_dict(grow_state(_trained_like(old).state_dict(), old, new))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ((grown(x) - x) ** 2).mean().backward()
    g = grown.encoder[0][0].conv.weight.grad  # channel 4+k copies one of channels 0..3
    w = grown.encoder[0][0].conv.weight
    for k in range(4, 8):
        twin = next(j for j in range(4) if torch.equal(w[j], w[k]))
        assert not torch.allclose(g[k], g[twin])


def test_grow_refuses_what_it_cannot_preserve():
    base = ModelConfig(spatial_dims=2, channels=(8, 16), context=1)
    state = build_model(base).state_dict()
    for bad in (dict(channels=(4, 16)), dict(channels=(8, 16, 32)), dict(context=0), dict(shuffle=2), dict(residual=False)):
        with pytest.raises(ValueError):
            grow_state(state, base, dataclasses.replace(base, **bad))
    tailed = dataclasses.replace(base, tail=4)
    with pytest.raises(ValueError, match="tail"):  # a trained tail cannot be resized or dropped
        grow_state(build_model(tailed).state_dict(), tailed, dataclasses.replace(base, tail=8))


def test_added_tail_learns_and_is_seen():
    """The grown tail starts at zero but is trained: its output convolution gets a gradient, and
    once non-zero it changes the output."""
    old = ModelConfig(spatial_dims=2, channels=(4, 8), noise_channel=True, shuffle=2)
    new = dataclasses.replace(old, tail=4)
    grown = build_model(new).double()
    grown.load_state_dict(grow_state(_trained_like(old).state_dict(), old, new))
    x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ((grown(x) - x[:, :1]) ** 2).mean().backward()
    assert grown.tail[-1].conv.weight.grad.abs().max() > 0
    with torch.no_grad():
        before = grown(x)
        grown.tail[-1].conv.weight.normal_(0.0, 0.3)
        assert (grown(x) - before).abs().min() > 0  # every pixel: the tail acts at full resolution


def test_fit_starts_from_a_smaller_checkpoint(tmp_path, phantom_3d):
    small = ModelConfig(spatial_dims=2, channels=(4, 8), context=1, noise_channel=True)
    save_checkpoint(tmp_path / "small.pt", _trained_like(small), {"model": dataclasses.asdict(small)})
    big = dataclasses.replace(small, channels=(6, 8), context=2)
    cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=4, steps_per_epoch=2, epochs=1, val_patches=4,
                      device="cpu", lr=0.0)  # lr 0: the first validation is the grown start itself
    scans = [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
    fit(big, cfg, scans, tmp_path / "run", init=tmp_path / "small.pt", progress=False)
    grown, info, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    grown.double()
    assert info["model"]["context"] == 2 and info["init"] == "small.pt"
    ref = _trained_like(small)
    big_x, small_x = _input(small, 2, torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = ref(small_x)  # the run trained in float32: float32 tolerance
        torch.testing.assert_close(grown(big_x), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="architecture differs"):
        fit(dataclasses.replace(small, channels=(2, 8)), cfg, scans, tmp_path / "run2", init=tmp_path / "small.pt",
            progress=False)
