"""Exact expectation by enumerating a small discrete support: the ground truth.

loss = sum_c q(z_c) f(z_c) over every configuration z_c, so autograd of `loss` is the exact
gradient of E_q[f] (both through q's probabilities and through f). Applies to Categorical,
OneHotCategorical and Bernoulli, with independent dimensions through `Independent`, as long as
the number of configurations K^n stays under `max_configurations`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand
from .errors import EstimatorError, UnsupportedDistributionError


def support_size(q: Distribution) -> tuple[int, int]:
    """(values per dimension K, number of independent dimensions n) of a discrete `q`."""
    base = distributions.base_of(q)
    event_dims = len(q.event_shape) - len(base.event_shape)
    n = math.prod(q.event_shape[:event_dims]) if event_dims else 1
    k = 2 if isinstance(base, Bernoulli) else base.logits.shape[-1]
    return k, n


def enumerate_support(q: Distribution) -> Tensor:
    """Every configuration of `q`, shape (K^n, *batch, *event), in lexicographic order."""
    base = distributions.base_of(q)
    k, n = support_size(q)
    grids = torch.meshgrid(*[torch.arange(k, device=base.logits.device)] * n, indexing="ij")
    index = torch.stack(grids, -1).reshape(-1, *q.event_shape[: len(q.event_shape)
                                                             - len(base.event_shape)])
    if isinstance(base, OneHotCategorical):
        values = F.one_hot(index, k).to(base.logits.dtype)
    elif isinstance(base, Bernoulli):
        values = index.to(base.logits.dtype)
    else:
        values = index
    # Insert the batch dimensions between the configuration and the event dimensions.
    shape = (values.shape[0], *[1] * len(q.batch_shape), *q.event_shape)
    return values.reshape(shape).expand(values.shape[0], *q.batch_shape, *q.event_shape)


class Exact(Estimator):
    """Exact E_q[f] and its gradient by enumeration. `num_samples` is ignored."""

    name = "exact"

    def __init__(self, max_configurations: int = 4096) -> None:
        super().__init__(direct_term=True)
        if int(max_configurations) < 1:
            raise EstimatorError(
                f"estimator 'exact': max_configurations must be >= 1, got {max_configurations!r}"
            )
        self.max_configurations = int(max_configurations)

    @property
    def supports(self) -> str:  # type: ignore[override]
        return (
            "Categorical, OneHotCategorical and Bernoulli (optionally inside Independent) with "
            f"at most {self.max_configurations} configurations"
        )

    def applies_to(self, q: Distribution) -> bool:
        base = distributions.base_of(q)
        if type(base) not in (Bernoulli, Categorical, OneHotCategorical):
            return False
        k, n = support_size(q)
        return k**n <= self.max_configurations

    def check(self, q: Distribution) -> None:
        if type(distributions.base_of(q)) in (Bernoulli, Categorical, OneHotCategorical):
            k, n = support_size(q)
            if k**n > self.max_configurations:
                raise UnsupportedDistributionError(
                    self.name,
                    f"{distributions.describe(q)} with {k}^{n} = {k**n} configurations",
                    f"{self.supports} (option max_configurations={self.max_configurations}; "
                    f"estimators.get('exact', max_configurations={k**n}) would enumerate "
                    "this one, if time and memory allow)",
                )
        super().check(q)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        z = enumerate_support(q)
        fz = self.evaluate(f, z, z.shape[0], q)
        loss = (self.sample_log_prob(q, z).exp() * fz).sum(0)
        return EstimatorOutput(loss, loss.detach(), z)

    def forward(self, q, f, num_samples=1, *, noise=None):  # type: ignore[override]
        # Enumeration draws no noise: skip the base class's noise handling.
        self.check(q)
        return self.counted_estimate(q, f, num_samples, None)
