"""Conditional VAE: predict one half of an image from the other (Sohn et al. 2015; the seeds'
"conditional VAE": log P(Y|X) >= E_{Q(z|X,Y)}[log P(Y|z,X)] - KL(Q(z|X,Y) || P(z|X))).

A batch x (B, D) is split into the observed first half x_in (the top rows of a row-major image)
and the predicted second half y. q(z|x_in, y) and the prior p(z|x_in) are Gaussian with MLP
parameters; p(y|z, x_in) is Bernoulli.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent

from estibench.estimators import distributions

from .base import LatentVariableModel
from .gaussian_vae import MIN_SCALE
from .likelihoods import bernoulli_log_likelihood
from .networks import mlp


def _gaussian(params: Tensor) -> Distribution:
    scale = F.softplus(params[..., 1, :]) + MIN_SCALE
    return Independent(distributions.normal(params[..., 0, :], scale), 1, validate_args=False)


class ConditionalVAE(LatentVariableModel):
    name = "conditional_vae"

    def __init__(
        self, input_dim: int = 64, latent_dim: int = 8, hidden: int | Sequence[int] = 200,
        activation: str = "tanh", kl: str = "analytic", bound: str = "elbo",
    ) -> None:
        super().__init__(kl, bound)  # type: ignore[arg-type]
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.observed = self.input_dim // 2
        predicted = self.input_dim - self.observed
        self.encoder = mlp(self.input_dim, hidden, 2 * self.latent_dim, activation)
        self.prior_net = mlp(self.observed, hidden, 2 * self.latent_dim, activation)
        self.decoder = mlp(self.latent_dim + self.observed, hidden, predicted, activation)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_in, y): the observed and the predicted halves."""
        return x[..., : self.observed], x[..., self.observed :]

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        assert x is not None
        return self.encoder(x).unflatten(-1, (2, self.latent_dim))

    def distribution(self, params: Tensor) -> Distribution:
        return _gaussian(params)

    def prior(self, x: Tensor | None = None) -> Distribution:
        assert x is not None, "the conditional prior p(z|x_in) needs x"
        return _gaussian(self.prior_net(self.split(x)[0]).unflatten(-1, (2, self.latent_dim)))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        x_in, y = self.split(x)
        context = x_in.expand(*z.shape[:-1], x_in.shape[-1])
        return bernoulli_log_likelihood(self.decoder(torch.cat([z, context], -1)), y)
