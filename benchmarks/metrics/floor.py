"""The floor: a bare forward + backward of an objective's networks, no estimator machinery.

What any gradient estimator must at least do on a VAE: the encoder's forward pass, one draw of
S samples per example by plain torch ops, the decoder's forward pass and likelihood, and a
backward pass through both networks. Throughput divides an estimator's time by this floor
(`overhead_ratio`), so the ratio shows what the estimator, the distributions and the objective's
extra terms (KL, log q, baselines) cost on top of the unavoidable arithmetic.

The samples, from uniform noise drawn in the step like the estimators draw theirs:
- Normal: loc + scale * ndtri(u) (the pathwise sample);
- one-hot categorical: softmax(logits + Gumbel(u)); Bernoulli: sigmoid(logits + logistic(u)):
  the relaxed sample, so the backward pass reaches the encoder as every estimator's does.
Toys (no networks) differentiate their cost at such a sample. A researcher's model
(`ModelObjective`) draws hard samples, since its f may be defined on the support only, and
differentiates f + log q there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Normal, OneHotCategorical

from estibench.benchmarks.objectives import LatentVariableModel, ModelObjective, Objective
from estibench.estimators import distributions

from .errors import MetricsError


def plain_sample(q: torch.distributions.Distribution, num_samples: int) -> Tensor:
    """S differentiable samples (S, *batch, *event) of `q` by plain tensor ops."""
    base = distributions.base_of(q)
    if isinstance(base, Normal):
        u = torch.rand((num_samples, *base.loc.shape), dtype=base.loc.dtype,
                       device=base.loc.device)
        return base.loc + base.scale * torch.special.ndtri(u.clamp(1e-6, 1 - 1e-6))
    if isinstance(base, (Bernoulli, Categorical, OneHotCategorical)):
        logits = base.logits
        u = torch.rand((num_samples, *logits.shape), dtype=logits.dtype, device=logits.device)
        u = u.clamp(1e-6, 1 - 1e-6)
        if isinstance(base, Bernoulli):
            return torch.sigmoid(logits + torch.log(u) - torch.log1p(-u))
        return torch.softmax(logits - torch.log(-torch.log(u)), -1)
    raise MetricsError(f"no plain sampler for {distributions.describe(q)}")


def bare_step(objective: Objective, x: Tensor | None, num_samples: int) -> Callable[[], None]:
    """A function running one bare forward + backward of `objective`'s networks on x with S
    samples (gradients accumulate on the parameters; the caller clears them)."""
    if isinstance(objective, LatentVariableModel):
        assert x is not None

        def step() -> None:
            q = objective.distribution(objective.posterior_params(x))
            z = plain_sample(q, num_samples)
            objective.log_likelihood(x, z).sum().backward()

        return step
    if isinstance(objective, ModelObjective):

        def model_step() -> None:
            # a hard sample (f may read only the support), f and log q: what a score-function
            # estimator at least does, reaching the encoder through log q and the model
            # through f
            q = objective.distribution(objective.posterior_params(x))
            z = q.sample((num_samples,))
            f = objective.integrand(x, q)
            (f(z) + distributions.log_prob(q, z)).sum().backward()

        return model_step
    cost = getattr(objective, "cost", None)
    if cost is None:
        raise MetricsError(
            f"objective '{objective.name}': no bare forward + backward is defined (neither a "
            f"latent-variable model nor a toy with a cost)"
        )

    def toy_step() -> None:
        q = objective.distribution(objective.posterior_params(x))
        (-cost(plain_sample(q, num_samples))).sum().backward()

    return toy_step


__all__ = ["bare_step", "plain_sample"]
