"""Self-supervised pieces of `denoise adapt`: the blind spot never sees what it predicts, repeats are
told from different images, the mask radius follows the noise's correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.nn import functional as F

from denoise.adapt_data import blindspot_radius, prepare_source
from denoise.normalize import Normalization
from denoise.scan import Scan
from denoise.selfsup import blindspot_input, masked_mse, radius_for_correlation, repeat_indices


def _blocks(centres: torch.Tensor, radius: int) -> torch.Tensor:
    pool = F.max_pool2d if centres.ndim == 3 else F.max_pool3d
    return pool(centres[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


@pytest.mark.parametrize("radius", [0, 1, 2])
@pytest.mark.parametrize("dims", [2, 3])
def test_the_blind_spot_loss_never_sees_the_masked_voxels(radius, dims):
    """The gradient of the loss through the network with respect to every voxel of every masked
    block (in every channel) is zero: the prediction at a centre cannot use the noise at or near it."""
    torch.manual_seed(0)
    shape = (2, 3, 20, 22) if dims == 2 else (2, 1, 10, 14, 14)
    x = torch.randn(shape, requires_grad=True)
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    net = torch.nn.Sequential(conv(shape[1], 6, 3, padding=1), torch.nn.ReLU(), conv(6, 1, 5, padding=2))
    masked, centres = blindspot_input(x, radius, generator=torch.Generator().manual_seed(1))
    out = net(masked)
    masked_mse(out, x.detach()[:, :1], centres).backward()
    blocks = _blocks(centres, radius)
    grad = x.grad.abs().sum(dim=1)
    assert centres.any()
    assert float(grad[blocks].max()) == 0.0
    assert float(grad[~blocks].max()) > 0.0  # the rest of the input is used


@pytest.mark.parametrize("radius", [0, 1])
def test_masked_voxels_take_values_of_unmasked_voxels_far_enough_away(radius):
    x = torch.rand(1, 1, 24, 24, dtype=torch.float64)  # distinct values: each can be traced back
    masked, centres = blindspot_input(x, radius, generator=torch.Generator().manual_seed(2))
    blocks = _blocks(centres, radius)[0]
    img, out = x[0, 0], masked[0, 0]
    for y, xx in zip(*torch.nonzero(blocks, as_tuple=True)):
        src = torch.nonzero(img == out[y, xx], as_tuple=False)
        assert len(src) == 1  # a copy of one original voxel (no fallback mean here)
        sy, sx = src[0]
        assert not blocks[sy, sx]
        assert max(abs(int(sy) - int(y)), abs(int(sx) - int(xx))) >= 2 * radius + 1
    assert torch.equal(out[~blocks], img[~blocks])


def test_radius_follows_the_measured_correlation():
    assert radius_for_correlation(0.02) == 0
    assert radius_for_correlation(0.3) == 1
    assert radius_for_correlation(0.6) == 2
    assert radius_for_correlation(None) == 1 and radius_for_correlation(float("nan")) == 1


def _repeats(phantom_3d, rng, k=4, correlated=False):
    reps = []
    for _ in range(k):
        n = rng.normal(0, 30, phantom_3d.shape)
        if correlated:  # zero-fill-like correlation between neighbouring pixels
            n = ndimage.uniform_filter(n, size=(1, 2, 2)) * 2
        reps.append(phantom_3d + 200 + n)
    return np.stack(reps).astype(np.float32)


def test_true_repeats_are_found_and_a_moved_one_is_left_out(phantom_3d, rng):
    reps = _repeats(phantom_3d, rng)
    assert repeat_indices(reps).kept == [0, 1, 2, 3]
    moved = reps.copy()
    moved[2] = np.roll(moved[2], 4, axis=2)
    check = repeat_indices(moved)
    assert 2 not in check.kept and len(check.kept) == 3 and "2" in check.reason


def test_different_images_are_not_repeats(phantom_3d, rng):
    """A field map stored beside its magnitude, or two contrasts: not a Noise2Noise set."""
    magnitude = phantom_3d + 200 + rng.normal(0, 30, phantom_3d.shape)
    z, y, x = np.indices(phantom_3d.shape)
    field = (40 * np.sin(x / 5.0) + 60 * y / y.max()) * (phantom_3d > 0)  # a smooth map, other units
    assert not repeat_indices(np.stack([magnitude, field]).astype(np.float32))
    inverted = phantom_3d.max() - phantom_3d + 200  # another contrast of the same anatomy
    assert not repeat_indices(np.stack([magnitude, inverted]).astype(np.float32))


def test_correlated_noise_gets_a_larger_blind_spot(phantom_3d, rng):
    norm = Normalization()
    white = prepare_source("w", Scan(_repeats(phantom_3d, rng), (1.0, 1.0, 1.0), modality="MR"), norm, use_repeats=True)
    corr = prepare_source("c", Scan(_repeats(phantom_3d, rng, correlated=True), (1.0, 1.0, 1.0), modality="MR"), norm,
                          use_repeats=True)
    assert white.pairs and corr.pairs
    assert blindspot_radius([white])[0] == 0
    assert blindspot_radius([corr])[0] >= 1
