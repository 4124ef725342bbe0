"""Sigmoid belief net VAE: Bernoulli latents with a learned factorised prior.

`hidden=()` gives the linear model (logistic regression encoder and decoder, the classic SBN of
Mnih & Gregor 2014); a hidden size gives the nonlinear one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from estibench.estimators import distributions

from .base import DiscreteLatentModel
from .likelihoods import bernoulli_log_likelihood
from .networks import mlp


class BernoulliVAE(DiscreteLatentModel):
    name = "bernoulli_vae"

    def __init__(
        self, input_dim: int = 64, latent_dim: int = 16, hidden: int | Sequence[int] = (),
        activation: str = "tanh", kl: str = "analytic", bound: str = "elbo",
        max_configurations: int = 4096,
    ) -> None:
        super().__init__(kl, max_configurations, bound)  # type: ignore[arg-type]
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.encoder = mlp(self.input_dim, hidden, self.latent_dim, activation)
        self.decoder = mlp(self.latent_dim, hidden, self.input_dim, activation)
        self.prior_logits = nn.Parameter(torch.zeros(self.latent_dim))

    @property
    def num_configurations(self) -> int:
        return 2**self.latent_dim

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """Logits (B, latent_dim)."""
        assert x is not None
        return self.encoder(x)

    def distribution(self, params: Tensor) -> Distribution:
        return Independent(distributions.bernoulli(params), 1, validate_args=False)

    def prior(self, x: Tensor | None = None) -> Distribution:
        return Independent(distributions.bernoulli(self.prior_logits), 1, validate_args=False)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return bernoulli_log_likelihood(self.decoder(z), x)
