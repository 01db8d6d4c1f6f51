"""The autoencoder lesson's measures (issue #25 item 3): each reads what it claims on cases whose
answer is known."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from denoise import ae_lesson as L
from denoise.config import TrainConfig


class _LinearAE(torch.nn.Module):
    """encode = a fixed linear map to a 4x4 code, decode = its transpose: decoded paths are linear."""

    def __init__(self):
        super().__init__()
        self.w = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))

    def encode(self, x):
        return (x.reshape(len(x), -1) @ self.w.T).reshape(len(x), 1, 4, 4)

    def decode(self, z):
        return (z.reshape(len(z), -1) @ self.w).reshape(len(z), 1, 8, 8)


class _FixedPosterior(torch.nn.Module):
    def __init__(self, mu, logvar):
        super().__init__()
        self.mu, self.logvar = mu, logvar

    def encode(self, x):
        return self.mu.expand(len(x), -1, -1, -1), self.logvar.expand(len(x), -1, -1, -1)


def test_each_lesson_run_changes_one_thing():
    base = TrainConfig(patch_size=32, steps_per_epoch=10, epochs=2)
    runs = L.lesson_runs(base)
    assert {m.latent_channels for n, (m, _) in runs.items() if n.startswith("ae-")} == set(L.CODE_SIZES)
    for name, (model, train) in runs.items():
        assert model.channels == L.CHANNELS and not model.skip and model.patch_size == 32
        assert (train.noise == "rician:0.05") == name.startswith("dae-")
    assert runs["dae-4"][0] == runs["ae-4"][0]  # the same network, only the input noise differs
    assert [runs[f"vae-{b:g}"][1].beta for b in L.BETAS] == list(L.BETAS)
    assert [runs[f"cae-{w:g}"][1].contractive_weight for w in L.CONTRACTIVE_WEIGHTS] == list(L.CONTRACTIVE_WEIGHTS)


def test_neighbour_agreement_is_one_for_the_images_themselves_and_low_for_a_shuffled_code():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 1, 8, 8))
    assert L.neighbour_agreement(images, images) == 1.0
    assert L.neighbour_agreement(images * 3.0 + 1.0, images) == 1.0  # distances up to scale: same neighbours
    assert L.neighbour_agreement(images[rng.permutation(60)], images) < 0.3


def test_pca_is_exact_at_full_rank_and_the_best_linear_code_below_it():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(400, 3)) @ rng.normal(size=(3, 16))).reshape(400, 1, 4, 4).astype(np.float32)
    mean, basis = L.pca_basis(x, 3)
    assert np.allclose(L.pca_reconstruct(x, mean, basis), x, atol=1e-4)  # rank-3 data, 3 components
    mean, basis = L.pca_basis(x, 1)
    err = ((L.pca_reconstruct(x, mean, basis) - x) ** 2).mean()
    q = np.linalg.qr(rng.normal(size=(16, 1)))[0]
    assert err < ((L.pca_reconstruct(x, mean, q) - x) ** 2).mean()


def test_a_linear_decoder_changes_evenly_along_a_straight_line():
    net = _LinearAE()
    a, b = np.random.default_rng(2).normal(size=(2, 3, 1, 8, 8)).astype(np.float32)
    assert L.interpolation_evenness(net, a, b) == pytest.approx(1.0, abs=1e-4)


def test_sample_distance_is_zero_for_the_same_patches_and_blur_lowers_sharpness():
    real = np.random.default_rng(3).random((16, 1, 32, 32)).astype(np.float32)
    same = L.sample_distance(real, real)
    assert same["intensity"] == 0 and same["gradient"] == 0 and same["sharpness"] == pytest.approx(1.0)
    blurred = gaussian_filter(real, sigma=(0, 0, 2, 2))
    d = L.sample_distance(blurred, real)
    assert d["sharpness"] < 0.5 and d["gradient"] > 0


def test_active_units_count_channels_whose_posterior_left_the_prior():
    mu = torch.zeros(1, 4, 2, 2)
    mu[:, :2] = 1.0  # two channels carry information, two equal the prior
    net = _FixedPosterior(mu, torch.zeros(1, 4, 2, 2))
    kl = L.kl_per_unit(net, np.zeros((3, 1, 8, 8), np.float32))
    assert kl[:2] == pytest.approx([0.5, 0.5]) and kl[2:] == pytest.approx([0.0, 0.0])
    assert L.active_units(net, np.zeros((3, 1, 8, 8), np.float32)) == 0.5


def test_matched_gaussian_codes_have_the_codes_mean_and_std_per_channel():
    z = torch.stack([torch.full((4, 4), 2.0) + torch.randn(4, 4) * 0.1, torch.randn(4, 4) * 3.0]).unsqueeze(0).repeat(50, 1, 1, 1)
    z = z + torch.randn_like(z) * 0.01
    s = L.matched_gaussian_codes(z, 2000)
    assert s.shape == (2000, 2, 4, 4)
    dims = (0, 2, 3)
    assert torch.allclose(s.mean(dim=dims), z.mean(dim=dims), atol=0.1)
    assert torch.allclose(s.std(dim=dims), z.std(dim=dims), rtol=0.05)
