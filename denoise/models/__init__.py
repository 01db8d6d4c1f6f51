"""The autoencoder family and the classical baselines, all behind one `Denoiser` interface."""

from __future__ import annotations

from torch import nn

from denoise.config import ModelConfig
from denoise.models.autoencoder import ConvAutoencoder
from denoise.models.base import Denoiser
from denoise.models.classical import CLASSICAL_METHODS, ClassicalDenoiser, bm3d_available
from denoise.models.contractive import ContractiveAutoencoder, latent_sensitivity
from denoise.models.linear import LinearAutoencoder
from denoise.models.sparse import SparseAutoencoder, sparsity_fraction
from denoise.models.vae import VAE, VAEOutput

__all__ = [
    "MODELS",
    "build_model",
    "ConvAutoencoder",
    "VAE",
    "VAEOutput",
    "SparseAutoencoder",
    "LinearAutoencoder",
    "ContractiveAutoencoder",
    "latent_sensitivity",
    "sparsity_fraction",
    "Denoiser",
    "ClassicalDenoiser",
    "CLASSICAL_METHODS",
    "bm3d_available",
    "unwrap",
]

MODELS: dict[str, type[nn.Module]] = {
    "dae": ConvAutoencoder,
    "vae": VAE,
    "sparse": SparseAutoencoder,
    "linear": LinearAutoencoder,
    "cae": ContractiveAutoencoder,
}


def build_model(config: ModelConfig | dict) -> nn.Module:
    """Instantiate the network that ``config.kind`` names (a dict is validated first)."""
    if isinstance(config, dict):
        from denoise.config import config_from_dict

        config = config_from_dict(ModelConfig, config)
    return MODELS[config.kind](config)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a (Distributed)DataParallel wrapper, or the network itself."""
    return model.module if hasattr(model, "module") else model
