"""Toy objectives with closed-form values and gradients (no data: x is None).

- bernoulli_toy: maximise -E_{b ~ Bern(sigmoid(phi))}[(b - t)^2], the REBAR/RELAX toy (t = 0.499,
  phi initialised at 0 as in the RELAX code). Exact value -(p (1 - t)^2 + (1 - p) t^2).
- gaussian_toy: maximise -E_{x ~ N(mu, sigma^2)}[c(x)] (Mohamed et al. 2020, section 3) with the
  cost c chosen by `cost` and k = `target`, each with its expectation in closed form:
  quadratic (x - k)^2: (mu - k)^2 + sigma^2;
  exp exp(-k x^2): exp(-k mu^2 / (1 + 2 k sigma^2)) / sqrt(1 + 2 k sigma^2) (complete the square
    in the Gaussian integral; finite for 1 + 2 k sigma^2 > 0);
  cos cos(k x): cos(k mu) exp(-k^2 sigma^2 / 2) (the real part of E e^{ikx}, the characteristic
    function). Parameters are (mu, log sigma); `parameters` = "mean" or "scale" makes only one
    of them the distribution parameter (the other fixed), so the gradient statistics are those
    of that coordinate alone (Mohamed et al.'s mean and scale panels).
- categorical_toy: maximise -E_{y ~ OneHotCategorical(softmax(phi))}[cost(y)], one categorical
  variable with K categories (the zoo's T2 problem: probabilities (0.2, 0.3, 0.5) at the start,
  c = (1, 2, 4)), with the cost of s = c . y chosen by `cost`: linear s, quadratic (s - 2)^2,
  cubic s^3 / 10; defined on the simplex too, so relaxed estimators apply. Exact value
  -sum_k softmax(phi)_k cost(e_k). Parameters are the logits, initialised at log `probs`.
- dirichlet_toy: maximise -E_{z ~ Dirichlet(alpha)}[||z - c||^2], a latent with no uniform noise
  map: pathwise uses torch's implicit reparameterization (Figurnov et al. 2018) and reinforce
  q.sample(). Exact value from the Dirichlet moments, E z_i = alpha_i / alpha_0 and
  Var z_i = alpha_i (alpha_0 - alpha_i) / (alpha_0^2 (alpha_0 + 1)); parameters are log alpha.

The "batch" of a toy is `dims` independent copies, so per-coordinate statistics come for free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Dirichlet, Distribution

from estibench.estimators import Estimator, EstimatorOutput, distributions

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
        return distributions.bernoulli(params)

    def cost(self, z: Tensor) -> Tensor:
        return (z - self.target) ** 2

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        p = torch.sigmoid(self.phi if params is None else params)
        t = self.target
        return -(p * (1 - t) ** 2 + (1 - p) * t**2)


class GaussianToy(_Toy):
    """-E_{x ~ N(mu, sigma^2)}[cost(x)]; params (dims, 2) = (mu, log sigma), or (dims, 1) with
    `parameters` = "mean" (mu) or "scale" (log sigma)."""

    name = "gaussian_toy"
    COSTS = ("quadratic", "exp", "cos")
    PARAMETERS = ("both", "mean", "scale")

    def __init__(
        self, mean: float = 1.0, std: float = 1.0, target: float = 0.0, dims: int = 1,
        cost: str = "quadratic", parameters: str = "both",
    ) -> None:
        super().__init__(dims)
        if not float(std) > 0:
            raise ObjectiveError(f"std must be > 0, got {std!r}")
        if cost not in self.COSTS:
            raise ObjectiveError(f"cost must be one of {', '.join(self.COSTS)}, got {cost!r}")
        if parameters not in self.PARAMETERS:
            raise ObjectiveError(f"parameters must be one of {', '.join(self.PARAMETERS)}, "
                                 f"got {parameters!r}")
        if cost == "exp" and not 1 + 2 * float(target) * float(std) ** 2 > 0:
            raise ObjectiveError(f"cost 'exp' needs 1 + 2 target std^2 > 0 (a finite "
                                 f"expectation), got target={target!r}, std={std!r}")
        self.target = float(target)
        self.cost_name = cost
        self.parameters_learned = parameters
        init = torch.tensor([float(mean), float(torch.tensor(float(std)).log())]).repeat(dims, 1)
        learned = {"both": [0, 1], "mean": [0], "scale": [1]}[parameters]
        self.phi = nn.Parameter(init[:, learned].clone())
        self.register_buffer("fixed", init)  # the coordinates that are not learned

    def _mean_log_std(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.parameters_learned == "both":
            return params[..., 0], params[..., 1]
        if self.parameters_learned == "mean":
            return params[..., 0], self.fixed[..., 1].expand_as(params[..., 0])
        return self.fixed[..., 0].expand_as(params[..., 0]), params[..., 0]

    def distribution(self, params: Tensor) -> Distribution:
        mu, log_std = self._mean_log_std(params)
        return distributions.normal(mu, log_std.exp())

    def cost(self, z: Tensor) -> Tensor:
        k = self.target
        if self.cost_name == "exp":
            return torch.exp(-k * z**2)
        if self.cost_name == "cos":
            return torch.cos(k * z)
        return (z - k) ** 2

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        mu, log_std = self._mean_log_std(self.phi if params is None else params)
        var, k = (2 * log_std).exp(), self.target
        if self.cost_name == "exp":
            scale = 1 + 2 * k * var
            return -torch.exp(-k * mu**2 / scale) / scale.sqrt()
        if self.cost_name == "cos":
            return -torch.cos(k * mu) * torch.exp(-(k**2) * var / 2)
        return -((mu - k) ** 2 + var)


class CategoricalToy(_Toy):
    """-E_{y ~ OneHotCategorical(softmax(phi))}[cost(c . y)]; params (dims, K) = logits."""

    name = "categorical_toy"
    COSTS = ("linear", "quadratic", "cubic")

    def __init__(self, probs: tuple[float, ...] = (0.2, 0.3, 0.5),
                 values: tuple[float, ...] = (1.0, 2.0, 4.0), cost: str = "cubic",
                 dims: int = 1) -> None:
        super().__init__(dims)
        p = torch.tensor([float(v) for v in probs])
        if p.dim() != 1 or len(p) < 2 or not bool((p > 0).all()):
            raise ObjectiveError(f"probs must be at least two numbers > 0, got {probs!r}")
        if len(values) != len(p):
            raise ObjectiveError(f"values must have {len(p)} entries (one per category), "
                                 f"got {values!r}")
        if cost not in self.COSTS:
            raise ObjectiveError(f"cost must be one of {', '.join(self.COSTS)}, got {cost!r}")
        self.cost_name = cost
        self.register_buffer("values", torch.tensor([float(c) for c in values]))
        self.phi = nn.Parameter((p / p.sum()).log().repeat(self.dims, 1))

    def distribution(self, params: Tensor) -> Distribution:
        return distributions.one_hot_categorical(params)

    def cost(self, z: Tensor) -> Tensor:
        s = (z * self.values.to(z.dtype)).sum(-1)
        if self.cost_name == "linear":
            return s
        if self.cost_name == "quadratic":
            return (s - 2) ** 2
        return s**3 / 10

    def exact(self, x: Tensor | None = None, params: Tensor | None = None) -> Tensor:
        logits = self.phi if params is None else params
        corners = torch.eye(logits.shape[-1], dtype=logits.dtype, device=logits.device)
        return -(torch.softmax(logits, -1) * self.cost(corners)).sum(-1)


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
