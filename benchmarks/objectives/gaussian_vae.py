"""Gaussian VAE: MLP encoder and decoder, N(0, I) prior, Bernoulli likelihood (binary data)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent

from estibench.estimators import distributions

from .base import LatentVariableModel, standard_normal
from .likelihoods import bernoulli_log_likelihood
from .networks import mlp

MIN_SCALE = 1e-4  # keeps q's scale positive without a hard clamp on the gradient


class GaussianVAE(LatentVariableModel):
    name = "gaussian_vae"

    def __init__(
        self, input_dim: int = 64, latent_dim: int = 8, hidden: int | Sequence[int] = 200,
        activation: str = "tanh", kl: str = "analytic", bound: str = "elbo",
    ) -> None:
        super().__init__(kl, bound)  # type: ignore[arg-type]
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.encoder = mlp(self.input_dim, hidden, 2 * self.latent_dim, activation)
        self.decoder = mlp(self.latent_dim, hidden, self.input_dim, activation)

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """(B, 2, latent_dim): location and pre-softplus scale."""
        assert x is not None
        return self.encoder(x).unflatten(-1, (2, self.latent_dim))

    def distribution(self, params: Tensor) -> Distribution:
        scale = F.softplus(params[..., 1, :]) + MIN_SCALE
        return Independent(distributions.normal(params[..., 0, :], scale), 1, validate_args=False)

    def prior(self, x: Tensor | None = None) -> Distribution:
        # x, when given, is what the encoder reads: it has the parameters' dtype and device
        return self.constant("prior", functools.partial(standard_normal, self.latent_dim), x)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return bernoulli_log_likelihood(self.decoder(z), x)
