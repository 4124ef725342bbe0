"""The continuous relaxation of discrete latents: Gumbel-Softmax / Concrete.

- gumbel_softmax (Jang et al. 2017; Maddison et al. 2017): f sees the relaxed sample
  softmax((logits + g) / tau) (binary Concrete for Bernoulli), drawn in log space, and the
  gradient is the pathwise gradient of that relaxed objective: *biased* by design, and the
  harness measures the bias against the exact gradient. `relax` maps a density to its Concrete
  counterpart, so a sampled KL uses Concrete log-densities at the relaxed sample, computed in
  log space (`estibench.estimators.densities` derives them).

`_Relaxed` (a temperature, the discrete families it applies to) is shared with the
straight-through estimators that backpropagate through a relaxation (`straight_through`).
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from . import densities, distributions
from .base import Estimator, EstimatorOutput, Integrand, check_temperature, output
from .noise import (
    relaxed_sample,
)

DISCRETE_SUPPORT = "Bernoulli and OneHotCategorical (optionally inside Independent)"


def _relaxable(q: Distribution) -> bool:
    return type(distributions.base_of(q)) in (Bernoulli, OneHotCategorical)


class _Relaxed(Estimator):
    supports = DISCRETE_SUPPORT
    unbiased = False

    def __init__(self, temperature: float = 1.0, direct_term: bool = True) -> None:
        super().__init__(direct_term=direct_term)
        self.temperature = temperature

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        # A schedule sets this during training; every value is checked.
        self._temperature = check_temperature(self.name, value)

    def applies_to(self, q: Distribution) -> bool:
        return _relaxable(q)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, direct_term={self.direct_term}"


class GumbelSoftmax(_Relaxed):
    """Concrete / Gumbel-Softmax: pathwise gradient of the relaxed objective."""

    name = "gumbel_softmax"
    relaxed_samples = True

    def relax(self, p: Distribution) -> Distribution:
        return densities.at_samples(p, lambda base: densities.Concrete(base, self.temperature))

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        z = relaxed_sample(q, noise, self.temperature)
        return output(self.evaluate(f, z, num_samples, q), z)
