"""TrainConfig.grad_clip: the optimiser never steps on a gradient whose global norm exceeds it."""

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from denoise.config import ModelConfig, TrainConfig
from denoise.scan import Scan
from denoise.train import fit


def _grad_norms(tmp_path, phantom_3d, clip: float) -> list[float]:
    norms: list[float] = []

    def record(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        cfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=10, epochs=2, lr=3e-3,
                          val_patches=8, device="cpu", grad_clip=clip)
        scans = [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
        fit(ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16)), cfg, scans, tmp_path / f"c{clip}",
            name="clip", progress=False)
    finally:
        handle.remove()
    return norms


def test_grad_clip_bounds_every_step_and_is_off_by_default(tmp_path, phantom_3d):
    free = _grad_norms(tmp_path, phantom_3d, 0.0)
    assert len(free) == 20 and max(free) > 0.01  # the unclipped gradients are larger than the bound below
    clipped = _grad_norms(tmp_path, phantom_3d, 0.01)
    assert len(clipped) == 20 and max(clipped) <= 0.01 * (1 + 1e-4)


def test_grad_clip_must_not_be_negative():
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=-1.0)
