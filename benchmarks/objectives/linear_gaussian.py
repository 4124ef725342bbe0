"""The linear-Gaussian VAE: probabilistic PCA decoder, linear Gaussian encoder; all exact.

p(z) = N(0, I_d), p(x|z) = N(W z + b, sigma^2 I_D), q(z|x) = N(A x + c, diag(s^2)). Then
log p(x) = log N(x; b, W W^T + sigma^2 I) in closed form, the true posterior is
N(Sigma W^T (x - b) / sigma^2, Sigma) with Sigma = (I + W^T W / sigma^2)^-1, and the ELBO is
closed form too, so its autograd is the exact gradient (Lucas et al. 2019). W is initialised with
orthogonal columns, so the true posterior is diagonal and q can equal it
(`set_encoder_to_posterior`), where ELBO = log p(x).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from estibench.estimators import distributions

from .base import LatentVariableModel, NoExactValue, ObjectiveError, standard_normal


class LinearGaussian(LatentVariableModel):
    name = "linear_gaussian"

    def __init__(
        self, input_dim: int = 64, latent_dim: int = 4, noise_std: float = 0.5,
        kl: str = "analytic", bound: str = "elbo", seed: int = 0,
    ) -> None:
        super().__init__(kl, bound)  # type: ignore[arg-type]
        if not float(noise_std) > 0:
            raise ObjectiveError(f"noise_std must be > 0, got {noise_std!r}")
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        g = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(self.input_dim, self.latent_dim, generator=g))
        scales = torch.linspace(2.0, 0.5, self.latent_dim)
        self.weight = nn.Parameter(basis * scales)
        self.bias = nn.Parameter(torch.full((self.input_dim,), 0.5))
        self.log_noise_std = nn.Parameter(torch.tensor(float(noise_std)).log())
        self.encoder = nn.ModuleDict({"linear": nn.Linear(self.input_dim, self.latent_dim)})
        self.encoder.register_parameter("log_scale", nn.Parameter(torch.zeros(self.latent_dim)))

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        assert x is not None
        loc = self.encoder["linear"](x)
        return torch.stack([loc, self.encoder.log_scale.expand_as(loc)], -2)

    def distribution(self, params: Tensor) -> Distribution:
        normal = distributions.normal(params[..., 0, :], params[..., 1, :].exp())
        return Independent(normal, 1, validate_args=False)

    def prior(self, x: Tensor | None = None) -> Distribution:
        return self.constant("prior", functools.partial(standard_normal, self.latent_dim))

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        mean = z @ self.weight.T + self.bias
        return Normal(mean, self.log_noise_std.exp(), validate_args=False).log_prob(x).sum(-1)

    # Closed forms ------------------------------------------------------------------------
    @property
    def has_exact(self) -> bool:
        return self.bound == "elbo"  # the closed form is the ELBO's

    @property
    def has_log_marginal(self) -> bool:
        return True

    def marginal(self) -> MultivariateNormal:
        """p(x) = N(b, W W^T + sigma^2 I)."""
        cov = self.weight @ self.weight.T
        cov = cov + self.log_noise_std.exp() ** 2 * torch.eye(self.input_dim, dtype=cov.dtype)
        return MultivariateNormal(self.bias, covariance_matrix=cov)

    def log_marginal(self, x: Tensor) -> Tensor:
        return self.marginal().log_prob(x)

    def true_posterior(self, x: Tensor) -> MultivariateNormal:
        """The exact posterior p(z|x) (full covariance in general)."""
        var = self.log_noise_std.exp() ** 2
        precision = torch.eye(self.latent_dim) + self.weight.T @ self.weight / var
        cov = torch.linalg.inv(precision)
        loc = (x - self.bias) @ self.weight @ cov.T / var
        return MultivariateNormal(loc, covariance_matrix=cov)

    def exact(self, x: Tensor | None, params: Tensor | None = None) -> Tensor:
        """The ELBO in closed form: E_q log N(x; Wz + b, sigma^2 I) - KL(q || N(0, I))."""
        assert x is not None
        if self.bound != "elbo":
            raise NoExactValue(f"objective '{self.name}' with bound={self.bound!r} has no "
                               "closed-form value (it depends on the number of samples)")
        p = self.posterior_params(x) if params is None else params
        loc, log_scale = p[..., 0, :], p[..., 1, :]
        var = (2 * self.log_noise_std).exp()
        resid = x - loc @ self.weight.T - self.bias
        spread = ((2 * log_scale).exp() * (self.weight**2).sum(0)).sum(-1)
        expected_ll = -0.5 * (
            self.input_dim * (math.log(2 * math.pi) + torch.log(var))
            + ((resid**2).sum(-1) + spread) / var
        )
        kl = 0.5 * ((2 * log_scale).exp() + loc**2 - 1 - 2 * log_scale).sum(-1)
        return expected_ll - kl

    @torch.no_grad()
    def set_encoder_to_posterior(self) -> None:
        """Make q(z|x) the exact posterior (needs W^T W diagonal, as initialised)."""
        gram = self.weight.T @ self.weight
        if not torch.allclose(gram, torch.diag(torch.diagonal(gram)), atol=1e-5):
            raise ObjectiveError("the true posterior is not diagonal: W^T W is not diagonal")
        var = self.log_noise_std.exp() ** 2
        post_var = 1.0 / (1.0 + torch.diagonal(gram) / var)
        a = post_var[:, None] * self.weight.T / var
        self.encoder["linear"].weight.copy_(a)
        self.encoder["linear"].bias.copy_(-(a @ self.bias))
        self.encoder.log_scale.copy_(0.5 * post_var.log())
