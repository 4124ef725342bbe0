"""Toy objectives with closed-form values and gradients (no data: x is None).

- bernoulli_toy: maximise -E_{b ~ Bern(sigmoid(phi))}[(b - t)^2], the REBAR/RELAX toy (t = 0.499,
  phi initialised at 0 as in the RELAX code). Exact value -(p (1 - t)^2 + (1 - p) t^2).
- gaussian_toy: maximise -E_{x ~ N(mu, sigma^2)}[(x - k)^2] (Mohamed et al. 2020, section 3).
  Exact value -((mu - k)^2 + sigma^2); parameters are (mu, log sigma).
- dirichlet_toy: maximise -E_{z ~ Dirichlet(alpha)}[||z - c||^2], a latent with no uniform noise
  map: pathwise uses torch's implicit reparameterization (Figurnov et al. 2018) and reinforce
  q.sample(). Exact value from the Dirichlet moments, E z_i = alpha_i / alpha_0 and
  Var z_i = alpha_i (alpha_0 - alpha_i) / (alpha_0^2 (alpha_0 + 1)); parameters are log alpha.

The "batch" of a toy is `dims` independent copies, so per-coordinate statistics come for free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Dirichlet, Distribution, Normal

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


class DirichletToy(_Toy):
    """-E_{z ~ Dirichlet(alpha)}[||z - c||^2]; params (dims, K) = log alpha."""

    name = "dirichlet_toy"

    def __init__(self, concentration: tuple[float, ...] = (2.0, 1.0, 3.0),
                 target: tuple[float, ...] = (0.6, 0.3, 0.1), dims: int = 1) -> None:
        super().__init__(dims)
        alpha = torch.tensor([float(a) for a in concentration])
        if alpha.dim() != 1 or len(alpha) < 2 or not bool((alpha > 0).all()):
            raise ObjectiveError(
                f"concentration must be at least two numbers > 0, got {concentration!r}")
        if len(target) != len(alpha):
            raise ObjectiveError(f"target must have {len(alpha)} entries (one per category), "
                                 f"got {target!r}")
        self.register_buffer("target", torch.tensor([float(c) for c in target]))
        self.phi = nn.Parameter(alpha.log().repeat(self.dims, 1))

    def distribution(self, params: Tensor) -> Distribution:
        return Dirichlet(params.exp(), validate_args=False)

    def cost(self, z: Tensor) -> Tensor:
        return ((z - self.target) ** 2).sum(-1)

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        alpha = (self.phi if params is None else params).exp()
        total = alpha.sum(-1, keepdim=True)
        mean = alpha / total
        var = alpha * (total - alpha) / (total**2 * (total + 1))
        return -(var + (mean - self.target) ** 2).sum(-1)
