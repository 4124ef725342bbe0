"""Toy objectives with closed-form values and gradients (no data: x is None).

- bernoulli_toy: maximise -E_{b ~ Bern(sigmoid(phi))}[(b - t)^2], the REBAR/RELAX toy (t = 0.499,
  phi initialised at 0 as in the RELAX code). Exact value -(p (1 - t)^2 + (1 - p) t^2).
- gaussian_toy: maximise -E_{x ~ N(mu, sigma^2)}[(x - k)^2] (Mohamed et al. 2020, section 3).
  Exact value -((mu - k)^2 + sigma^2); parameters are (mu, log sigma).

The "batch" of a toy is `dims` independent copies, so per-coordinate statistics come for free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Normal

from estimators import Estimator, EstimatorOutput

from .base import Objective, ObjectiveError


class _Toy(Objective):
    def __init__(self, dims: int) -> None:
        super().__init__()
        if int(dims) < 1:
            raise ObjectiveError(f"dims must be >= 1, got {dims!r}")
        self.dims = int(dims)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        return self.phi

    def cost(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def estimate(
        self,
        x: Tensor | None,
        estimator: Estimator,
        num_samples: int = 1,
        *,
        noise: Tensor | None = None,
        params: Tensor | None = None,
    ) -> EstimatorOutput:
        q = self.distribution(self.phi if params is None else params)
        return estimator(q, lambda z: -self.cost(z), num_samples, noise=noise)

    @property
    def has_exact(self) -> bool:
        return True


class BernoulliToy(_Toy):
    """-E_{b ~ Bernoulli(sigmoid(phi))}[(b - t)^2]; batch shape (dims,)."""

    name = "bernoulli_toy"

    def __init__(self, target: float = 0.499, dims: int = 1, init: float = 0.0) -> None:
        super().__init__(dims)
        self.target = float(target)
        self.phi = nn.Parameter(torch.full((self.dims,), float(init)))

    def distribution(self, params: Tensor) -> Distribution:
        return Bernoulli(logits=params, validate_args=False)

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.target) ** 2

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        p = torch.sigmoid(self.phi if params is None else params)
        t = self.target
        return -(p * (1 - t) ** 2 + (1 - p) * t**2)


class GaussianToy(_Toy):
    """-E_{x ~ N(mu, sigma^2)}[(x - k)^2]; params (dims, 2) = (mu, log sigma)."""

    name = "gaussian_toy"

    def __init__(
        self, mean: float = 1.0, std: float = 1.0, target: float = 0.0, dims: int = 1
    ) -> None:
        super().__init__(dims)
        if not float(std) > 0:
            raise ObjectiveError(f"std must be > 0, got {std!r}")
        self.target = float(target)
        init = torch.tensor([float(mean), float(torch.tensor(float(std)).log())])
        self.phi = nn.Parameter(init.repeat(self.dims, 1))

    def distribution(self, params: Tensor) -> Distribution:
        return Normal(params[..., 0], params[..., 1].exp(), validate_args=False)

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.target) ** 2

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        p = self.phi if params is None else params
        return -((p[..., 0] - self.target) ** 2 + (2 * p[..., 1]).exp())
