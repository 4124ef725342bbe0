"""Categorical VAE (Jang et al. 2017 style): N variables x K categories, uniform prior.

Samples are one-hot (OneHotCategorical, event shape (N, K)), so the same decoder reads hard
samples and relaxed (Gumbel-Softmax) ones. With relaxed estimators the KL convention is explicit:
kl="analytic" (default) uses the categorical KL(q || uniform) in closed form; kl="sampled" uses
the densities the estimator evaluates at its sample (`Estimator.relax`): Concrete log-densities
at the relaxed sample for Gumbel-Softmax (Maddison et al. 2017), their gradient for
straight-through Gumbel. Results name the choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

from estibench.estimators import distributions

from .base import DiscreteLatentModel
from .likelihoods import bernoulli_log_likelihood
from .networks import mlp


class CategoricalVAE(DiscreteLatentModel):
    name = "categorical_vae"

    def __init__(
        self, input_dim: int = 64, variables: int = 8, categories: int = 8,
        hidden: int | Sequence[int] = 200, activation: str = "tanh", kl: str = "analytic",
        bound: str = "elbo", max_configurations: int = 4096,
    ) -> None:
        super().__init__(kl, max_configurations, bound)  # type: ignore[arg-type]
        self.input_dim, self.variables, self.categories = (
            int(input_dim), int(variables), int(categories))
        width = self.variables * self.categories
        self.encoder = mlp(self.input_dim, hidden, width, activation)
        self.decoder = mlp(width, hidden, self.input_dim, activation)

    @property
    def differentiable_integrand(self) -> bool:  # type: ignore[override]
        """With kl="sampled", f holds log q(z) and log p(z) at z: at a relaxed or mean-field
        point a categorical log-density is that of its argmax, piecewise constant in z, so
        estimators that differentiate f there (muprop, rebar, relax) do not apply."""
        return self.kl == "analytic"

    @property
    def num_configurations(self) -> int:
        return self.categories**self.variables

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """Logits (B, N, K)."""
        assert x is not None
        return self.encoder(x).unflatten(-1, (self.variables, self.categories))

    def distribution(self, params: Tensor) -> Distribution:
        return Independent(distributions.one_hot_categorical(params), 1, validate_args=False)

    def prior(self, x: Tensor | None = None) -> Distribution:
        def uniform(dtype: torch.dtype, device: torch.device) -> Distribution:
            logits = torch.full((self.variables, self.categories), -math.log(self.categories),
                                dtype=dtype, device=device)
            return Independent(distributions.one_hot_categorical(logits), 1,
                               validate_args=False)

        # x, when given, is what the encoder reads: it has the parameters' dtype and device
        return self.constant("prior", uniform, x)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        return bernoulli_log_likelihood(self.decoder(z.flatten(-2)), x)
