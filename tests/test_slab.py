"""Slice-preserving 3D ("slab") DAEs: the 3D form of a 2.5D model, grown from one with the same output."""

import dataclasses

import numpy as np
import pytest
import torch

from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.data import PatchSampler
from denoise.infer import LearnedDenoiser, denoise_array
from denoise.models import build_model
from denoise.models.grow import grow_state
from denoise.scan import Scan
from denoise.train import fit

FLAT = ModelConfig(spatial_dims=2, channels=(4, 8, 16), context=1, noise_channel=True, shuffle=2)
SLAB = dataclasses.replace(FLAT, spatial_dims=3, slab=True, context=2, depth_levels=2)


def _random_weights(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.double().eval()


def _slab_input(vol: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.stack([vol, torch.full_like(vol, sigma)])[None]


def _flat_output(net: torch.nn.Module, vol: torch.Tensor, sigma: float, k: int) -> torch.Tensor:
    """The 2.5D model slice by slice, edge slices repeated (what 2D inference does)."""
    idx = np.clip(np.arange(len(vol))[:, None] + np.arange(-k, k + 1)[None], 0, len(vol) - 1)
    x = torch.cat([vol[idx], torch.full((len(vol), 1, *vol.shape[1:]), sigma, dtype=vol.dtype)], 1)
    return net(x)[:, 0]


def test_slab_model_keeps_the_slice_axis_at_full_resolution():
    net = build_model(dataclasses.replace(SLAB, depth_levels=1))
    seen = []
    for level in net.encoder:
        level.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    x = torch.randn(1, 2, 7, 20, 18)  # odd depth, in-plane sizes padded to the divisor and cropped back
    assert net(x).shape == (1, 1, 7, 20, 18)
    assert [s[0] for s in seen] == [7, 7, 7]  # no level halves the slices
    assert [s[1:] for s in seen] == [(12, 12), (6, 6), (3, 3)]  # unshuffle x2, then strides, in-plane
    deep = [m.conv.kernel_size[0] for m in net.modules() if hasattr(m, "conv") and m.conv.kernel_size[0] in (1, 3)]
    assert 3 in deep and 1 in deep  # only the deepest level spans 3 slices


def test_slab_config_is_validated():
    with pytest.raises(ValueError, match="slab"):
        dataclasses.replace(FLAT, slab=True)  # 2D
    with pytest.raises(ValueError, match="slab"):
        ModelConfig(kind="vae", spatial_dims=3, slab=True)
    with pytest.raises(ValueError, match="depth_levels"):
        ModelConfig(spatial_dims=3, depth_levels=1)
    with pytest.raises(ValueError, match="depth_levels"):
        dataclasses.replace(SLAB, depth_levels=4)
    with pytest.raises(ValueError, match="patch_depth"):
        TrainConfig(patch_depth=-1)


@pytest.mark.parametrize("tail", [0, 6])
def test_grown_slab_model_computes_the_2p5d_output_at_every_slice(tail):
    flat_cfg, slab_cfg = dataclasses.replace(FLAT, tail=tail), dataclasses.replace(SLAB, tail=tail)
    flat = _random_weights(build_model(flat_cfg))  # random weights: a tail that is not zero
    slab = build_model(slab_cfg).double().eval()
    slab.load_state_dict(grow_state(flat.state_dict(), flat_cfg, slab_cfg))
    gen = torch.Generator().manual_seed(1)
    vol = torch.rand(9, 20, 24, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = _flat_output(flat, vol, 0.05, FLAT.context)
        out = slab(_slab_input(vol, 0.05))[0, 0]
        assert ref.abs().max() > 0.1
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
        # at the start each slice sees only the 2.5D model's neighbours; once the 3-slice kernels of
        # the deep levels are non-zero, the output also depends on slices further away
        far = vol.clone()
        far[8] += 1.0
        assert torch.equal(slab(_slab_input(far, 0.05))[0, 0, 4], out[4])
        for m in slab.modules():
            if hasattr(m, "conv") and m.conv.kernel_size[0] == 3:
                m.conv.weight[:, :, ::2] = 0.3 * torch.randn_like(m.conv.weight[:, :, ::2])  # both outer taps
        moved = slab(_slab_input(far, 0.05))[0, 0, 4] - slab(_slab_input(vol, 0.05))[0, 0, 4]
        assert moved.abs().max() > 1e-6


def test_slab_inference_and_fit_start_from_a_2p5d_checkpoint(tmp_path, phantom_3d):
    flat = _random_weights(build_model(FLAT)).float()
    save_checkpoint(tmp_path / "flat.pt", flat, {"model": dataclasses.asdict(FLAT)})
    cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, patch_depth=6, batch_size=2, steps_per_epoch=2, epochs=1,
                      val_patches=2, device="cpu", lr=0.0)  # lr 0: the saved model is the grown start
    scans = [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
    fit(SLAB, cfg, scans, tmp_path / "run", init=tmp_path / "flat.pt", progress=False)
    slab, info, _ = load_checkpoint(tmp_path / "run" / "last.pt")
    assert info["model"]["slab"] and info["init"] == "flat.pt"
    vol = phantom_3d / phantom_3d.max()
    ref = LearnedDenoiser(flat, {"model": dataclasses.asdict(FLAT)}, device="cpu", sigma=0.05)
    den = LearnedDenoiser(slab, info, device="cpu", sigma=0.05)
    assert den.tile == (32, 320, 320)  # slab models tile in depth, whole slices in-plane
    for image in (vol, vol[5]):  # a volume, and a lone slice (a 1-slice volume; 2.5D repeats it as neighbours)
        expected = denoise_array(image, ref, modality="MR")
        torch.testing.assert_close(torch.from_numpy(denoise_array(image, den, modality="MR")), torch.from_numpy(expected),
                                   rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_shallow_3d_patches_keep_their_depth_and_rotate_in_plane(phantom_3d):
    s = PatchSampler([phantom_3d / 1000], noise="gaussian:0.1", spatial_dims=3, patch_size=8, patch_depth=4,
                     seed=0, noise_channel=True)
    for _ in range(5):  # every rotation keeps the (depth, y, x) layout, so batches stack
        noisy, clean = s.batch(4)
        assert noisy.shape == (4, 2, 4, 8, 8) and clean.shape == (4, 1, 4, 8, 8)


def test_only_slice_preserving_3d_models_take_a_lone_2d_slice(phantom_3d):
    image = (phantom_3d / phantom_3d.max())[5]
    iso_cfg = ModelConfig(spatial_dims=3, channels=(4, 8), noise_channel=True)
    iso = LearnedDenoiser(build_model(iso_cfg).eval(), {"model": dataclasses.asdict(iso_cfg)}, device="cpu", name="iso")
    slab = LearnedDenoiser(build_model(SLAB).eval(), {"model": dataclasses.asdict(SLAB)}, device="cpu")
    assert slab.accepts_2d and not iso.accepts_2d
    with pytest.raises(ValueError, match="iso is a 3D model.*single 2D slice"):
        denoise_array(image, iso, modality="MR")
    assert denoise_array(image, slab, modality="MR").shape == image.shape
