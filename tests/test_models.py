import numpy as np
import pytest
import torch

from denoise.config import ModelConfig
from denoise.losses import kl_divergence, sparsity
from denoise.models import MODELS, VAE, build_model, sparsity_fraction

SHAPES = {2: (2, 1, 20, 18), 3: (2, 1, 12, 10, 9)}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("dims", [2, 3])
def test_output_shape_equals_input_shape(kind, dims):
    net = build_model(ModelConfig(kind=kind, spatial_dims=dims, channels=(4, 8), latent_channels=4,
                                  patch_size=4, n_components=3))
    x = torch.randn(SHAPES[dims])
    out = net(x)
    out = out.recon if kind == "vae" else out
    assert out.shape == x.shape
    assert net.predict(x).shape == x.shape


@pytest.mark.parametrize("dims", [2, 3])
def test_vae_kl_sampling_interpolation_and_mean_inference(dims):
    torch.manual_seed(0)
    net = VAE(ModelConfig(kind="vae", spatial_dims=dims, channels=(4, 8), latent_channels=3, patch_size=8))
    x = torch.randn(SHAPES[dims])
    out = net.train()(x)
    kl = kl_divergence(out.mu, out.logvar)
    assert torch.isfinite(kl) and kl >= 0
    assert net.sample(5, spatial_size=8).shape == (5, 1, *([8] * dims))
    a, b = x[:1], x[1:]
    path = net.interpolate(a, b, steps=4)
    assert path.shape == (4, *a.shape[1:])
    net.eval()
    torch.testing.assert_close(net.predict(x), net.predict(x))  # deterministic
    torch.testing.assert_close(net(x).z, net(x).mu)  # eval: reconstruct from the mean
    net.train()
    assert not torch.equal(net(x).z, net(x).mu)  # training: reparameterised sample


def test_sparse_penalty_lowers_latent_l1():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)

    def train(weight):
        torch.manual_seed(1)
        net = build_model(ModelConfig(kind="sparse", spatial_dims=2, channels=(4, 8), latent_channels=8, residual=False))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(60):
            recon, z = net.forward_with_latent(x)
            loss = ((recon - x) ** 2).mean() + weight * sparsity(z)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.forward_with_latent(x)[1]

    z_plain, z_sparse = train(0.0), train(0.5)
    assert sparsity(z_sparse) < sparsity(z_plain)
    assert sparsity_fraction(z_sparse) >= sparsity_fraction(z_plain)


def test_linear_autoencoder_learns_the_pca_subspace():
    rng = np.random.default_rng(0)
    p, k = 4, 3
    basis = np.linalg.qr(rng.normal(size=(p * p, p * p)))[0]
    scales = np.array([5.0, 3.0, 2.0] + [0.1] * (p * p - 3))
    data = (rng.normal(size=(500, p * p)) * scales) @ basis.T
    data -= data.mean(0)
    x = torch.tensor(data, dtype=torch.float32).reshape(-1, 1, p, p)
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind="linear", spatial_dims=2, patch_size=p, n_components=k))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(400):
        loss = ((net(x) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = np.linalg.qr(net.subspace().numpy())[0]
    _, _, vt = np.linalg.svd(data, full_matrices=False)
    pca = vt[:k].T
    cosines = np.linalg.svd(learned.T @ pca, compute_uv=False)
    angles = np.degrees(np.arccos(np.clip(cosines, -1, 1)))
    assert angles.max() < 5.0


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        ModelConfig(kind="gan")
    with pytest.raises(ValueError, match="spatial_dims"):
        ModelConfig(spatial_dims=4)
    from denoise.config import TrainConfig, config_from_dict

    with pytest.raises(ValueError, match="unknown TrainConfig keys: lr_max"):
        config_from_dict(TrainConfig, {"lr_max": 1})


def test_context_model_takes_neighbouring_slices_and_returns_the_centre():
    net = build_model(ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8), context=1))
    x = torch.randn(2, 3, 16, 16)
    assert net(x).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="context"):
        ModelConfig(spatial_dims=3, context=1)


def test_context_sampler_and_inference_use_neighbours(phantom_3d):
    from denoise.data import PatchSampler
    from denoise.infer import LearnedDenoiser, denoise_array

    s = PatchSampler([phantom_3d / 1000], noise="gaussian:0.1", spatial_dims=2, patch_size=8, seed=0, context=2)
    noisy, clean = s.batch(3)
    assert noisy.shape == (3, 5, 8, 8) and clean.shape == (3, 1, 8, 8)
    net = build_model(ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8), context=2, residual=False))
    den = LearnedDenoiser(net, {"model": {"kind": "dae", "spatial_dims": 2, "context": 2}}, device="cpu")
    vol = phantom_3d - 100  # values below zero: no clipping at 0 to hide an untrained net's output
    out = denoise_array(vol, den, guard=False)  # the network itself (an untrained one adds noise)
    assert out.shape == phantom_3d.shape
    # changing a neighbouring slice changes the output of the centre slice
    other = vol.copy()
    other[5] += 100
    assert not np.allclose(denoise_array(other, den, guard=False)[4], out[4])


@pytest.mark.parametrize("dims", [2, 3])
def test_pixel_unshuffle_runs_the_network_at_half_resolution(dims):
    cfg = ModelConfig(kind="dae", spatial_dims=dims, channels=(4, 8), shuffle=2, noise_channel=True)
    net = build_model(cfg)
    seen = []
    net.encoder[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    x = torch.randn(2, 2, *SHAPES[dims][2:])  # odd sizes: padded to the divisor and cropped back
    assert net(x).shape == (2, 1, *SHAPES[dims][2:])
    sizes = [-(-s // net.divisor) * net.divisor // 2 for s in SHAPES[dims][2:]]
    assert seen[0] == (2, 2 * 2**dims, *sizes)  # 2^d sub-images of both channels, half the size
    with pytest.raises(ValueError, match="shuffle"):
        ModelConfig(shuffle=3)
    with pytest.raises(ValueError, match="shuffle"):
        ModelConfig(kind="vae", shuffle=2)


def test_context_sampler_sometimes_gives_a_lone_slice(phantom_3d):
    """2.5D training includes stacks whose neighbours repeat the noisy centre (a lone 2D image)."""
    from denoise.data import SINGLE_SLICE_PROB, PatchSampler

    s = PatchSampler([phantom_3d / 1000], noise="gaussian:0.1", spatial_dims=2, patch_size=8, seed=0, context=1)
    noisy, _ = s.batch(400)
    lone = np.mean([np.array_equal(n[0], n[1]) and np.array_equal(n[1], n[2]) for n in noisy])
    assert 0.4 * SINGLE_SLICE_PROB < lone < 2.5 * SINGLE_SLICE_PROB
