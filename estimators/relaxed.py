"""Relaxed estimators for discrete latents: Gumbel-Softmax / Concrete and straight-through.

All three are *biased* by design (Jang et al. 2017; Maddison et al. 2017; Bengio et al. 2013):
their gradient is that of a different (relaxed) objective or a heuristic. The harness measures
that bias against the exact gradient rather than hiding it.

- gumbel_softmax: f sees the relaxed sample softmax((logits + g) / tau) (binary Concrete for
  Bernoulli), drawn in log space. `relax` maps a density to its Concrete counterpart, so a
  sampled KL uses Concrete log-densities at the relaxed sample, computed in log space.
- st_gumbel: f sees the hard one-hot argmax in the forward pass; the gradient flows through the
  relaxed sample (hard + soft - stop_grad(soft)). A sampled KL: the discrete densities' value
  at the hard sample, the Concrete densities' gradient at the relaxed one.
- straight_through: f sees a hard sample; the gradient flows through q's mean
  (hard + probs - stop_grad(probs)), the plain ST estimator. A sampled KL: the discrete
  densities extended linearly in z, so their gradient flows the same way.

(`estimators.densities` derives the densities.)
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Bernoulli, Distribution, OneHotCategorical

from . import densities, sampling
from .base import Estimator, EstimatorOutput, Integrand, check_temperature, output

DISCRETE_SUPPORT = "Bernoulli and OneHotCategorical (optionally inside Independent)"


def _relaxable(q: Distribution) -> bool:
    return type(sampling.base_of(q)) in (Bernoulli, OneHotCategorical)


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
        z = sampling.relaxed_sample(q, noise, self.temperature)
        return output(self.evaluate(f, z, num_samples, q), z)


class STGumbel(_Relaxed):
    """Straight-through Gumbel-Softmax: hard sample forward, relaxed sample backward."""

    name = "st_gumbel"

    def relax(self, p: Distribution) -> Distribution:
        return densities.at_samples(
            p, lambda base: densities.StraightThroughConcrete(base, self.temperature))

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        soft = sampling.relaxed_sample(q, noise, self.temperature)
        # Parenthesised so the forward value is exactly the hard sample (soft - soft == 0).
        z = sampling.hard_of_relaxed(q, soft) + (soft - soft.detach())
        z = sampling.carrying(z, sampling.log_space(soft))  # for the densities in f
        return output(self.evaluate(f, z, num_samples, q), z.detach())


class StraightThrough(Estimator):
    """Plain straight-through: hard sample forward, gradient through q's mean."""

    name = "straight_through"
    supports = DISCRETE_SUPPORT
    unbiased = False

    def __init__(self, direct_term: bool = True) -> None:
        super().__init__(direct_term=direct_term)

    def applies_to(self, q: Distribution) -> bool:
        return _relaxable(q)

    def relax(self, p: Distribution) -> Distribution:
        return densities.at_samples(p, densities.LinearDiscrete)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        mean = sampling.mean_of(q)
        z = sampling.hard_sample(q, noise) + (mean - mean.detach())
        return output(self.evaluate(f, z, num_samples, q), z.detach())
