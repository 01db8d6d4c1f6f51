"""Contractive autoencoder: the Hutchinson/JVP estimate of ||J||_F^2 against the exact Jacobian,
and the penalty lowering the code's sensitivity."""

import numpy as np
import torch

from denoise.config import ModelConfig, TrainConfig
from denoise.losses import jacobian_frobenius
from denoise.models import ContractiveAutoencoder, build_model, latent_sensitivity


def _dense_encoder(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 5))


def test_estimate_matches_the_exact_frobenius_norm_within_its_statistical_error():
    enc = _dense_encoder()
    x = torch.randn(3, 1, 3, 4)
    exact, spread = [], []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda a: enc(a[None])[0], xi).reshape(5, 12)
        exact.append(float((J**2).sum()))
        spread.append(2 * float(((J.T @ J) ** 2).sum()))  # Var ||Jv||^2 for one Gaussian v
    n = 4000
    est = float(jacobian_frobenius(enc, x, samples=n, generator=torch.Generator().manual_seed(1)))
    target = float(np.mean(exact))
    stderr = float(np.sqrt(np.sum(spread) / len(x) ** 2 / n))
    assert abs(est - target) < 4 * stderr, (est, target, stderr)
    assert stderr < 0.05 * target  # the check is tight enough to mean something


def test_penalty_is_differentiable_in_the_weights_and_scales_quadratically():
    enc = _dense_encoder()
    x = torch.randn(4, 1, 3, 4)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    p = jacobian_frobenius(enc, x, samples=8, generator=gen())
    p.backward()
    assert all(float(enc[i].weight.grad.abs().sum()) > 0 for i in (1, 3)) and float(enc[1].bias.grad.abs().sum()) > 0
    assert enc[3].bias.grad is None or float(enc[3].bias.grad.abs().sum()) == 0  # the Jacobian does not depend on the output bias
    with torch.no_grad():
        enc[-1].weight.mul_(2.0)
    assert torch.isclose(jacobian_frobenius(enc, x, samples=8, generator=gen()), 4 * p.detach(), rtol=1e-4)


def test_cae_is_a_bottleneck_model_in_2d_and_3d():
    for dims, shape in ((2, (2, 1, 20, 24)), (3, (1, 1, 8, 12, 12))):
        net = build_model(ModelConfig(kind="cae", spatial_dims=dims, channels=(4, 8), latent_channels=3, skip=True))
        assert isinstance(net, ContractiveAutoencoder) and not net.skip
        x = torch.rand(*shape)
        assert net(x).shape == x.shape and net.encode(x).shape[1] == 3
        assert float(jacobian_frobenius(net.encode, x)) > 0


def test_training_with_the_penalty_lowers_the_codes_sensitivity():
    """A toy problem: the same small CAE trained 150 steps on the same noisy patches with and
    without the penalty; the penalised code moves less under small input perturbations."""
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.random((64, 1, 16, 16)).astype(np.float32)).cumsum(-1) / 16  # smooth ramps
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    sens = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        net = build_model(ModelConfig(kind="cae", spatial_dims=2, channels=(8, 16), latent_channels=4, residual=False))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for step in range(150):
            idx = torch.arange(step * 16, step * 16 + 16) % 64
            loss = ((net(noisy[idx]) - clean[idx]) ** 2).mean()
            if weight:
                loss = loss + weight * jacobian_frobenius(net.encode, noisy[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        sens[weight] = latent_sensitivity(net.encode, noisy[:16])
    assert sens[1.0] < 0.5 * sens[0.0], sens
    assert TrainConfig().contractive_weight > 0
