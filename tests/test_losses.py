import numpy as np
import pytest
import torch
from torch import nn

from denoise.config import ModelConfig, TrainConfig
from denoise.infer import load_model
from denoise.losses import reconstruction, shift_consistency
from denoise.models import build_model
from denoise.noise import add_noise
from denoise.scan import Scan
from denoise.train import fit


def _disagreement(net: nn.Module, x: torch.Tensor) -> float:
    """Mean squared difference between the output and the output of the input rolled by (1, 1)."""
    with torch.no_grad():
        a = net(x)
        b = torch.roll(net(torch.roll(x, (1, 1), (2, 3))), (-1, -1), (2, 3))
    return float(((a - b)[..., 4:-4, 4:-4] ** 2).mean())


@pytest.mark.parametrize("dims", [2, 3])
@torch.no_grad()
def test_shift_consistency_term_is_zero_for_a_shift_equivariant_model_and_not_for_pixel_unshuffle(dims):
    torch.manual_seed(0)
    x, clean = torch.rand(2, 1, *(16,) * dims), torch.rand(2, 1, *(16,) * dims)
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(1, 1, 3, padding=1)  # equivariant away from the border
    loss = [float(shift_consistency(conv, x, clean, kind="mse", weight=w)) for w in (0.0, 100.0)]
    assert loss[0] == pytest.approx(loss[1], rel=1e-5)
    assert loss[0] == pytest.approx(float(reconstruction(conv(x), clean)), rel=0.3)
    net = build_model(ModelConfig(spatial_dims=dims, channels=(4, 8), shuffle=2))
    torch.manual_seed(0)
    no_term = float(shift_consistency(net, x, clean, kind="mse", weight=0.0))
    torch.manual_seed(0)  # same random shift
    assert float(shift_consistency(net, x, clean, kind="mse", weight=100.0)) > no_term * 1.01


def test_training_with_shift_consistency_makes_pixel_unshuffle_outputs_agree(tmp_path, phantom_3d):
    scans = [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
    model_cfg = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16), shuffle=2)
    slice_ = phantom_3d[phantom_3d.shape[0] // 2]
    noisy = add_noise(slice_ / slice_.max(), "gaussian:0.1", seed=3).astype(np.float32)
    x = torch.from_numpy(noisy)[None, None]
    gaps = {}
    for w in (0.0, 10.0):
        cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=30, epochs=3, lr=3e-3,
                          val_patches=8, device="cpu", shift_consistency=w, seed=0)
        fit(model_cfg, cfg, scans, tmp_path / f"w{w}", name="tiny", progress=False)
        gaps[w] = _disagreement(load_model(tmp_path / f"w{w}" / "last.pt", device="cpu").net.eval(), x)
    assert gaps[10.0] < 0.5 * gaps[0.0]
