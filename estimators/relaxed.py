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

(`estibench.estimators.densities` derives the densities.)
"""

from __future__ import annotations

import functools

import torch
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
    """Straight-through Gumbel-Softmax: hard sample forward, relaxed sample backward.

    Decoupled temperatures (Shah et al. 2024, arXiv:2410.13331), used when `forward_temperature`
    or `backward_temperature` is given: forward argmax(logits / tau_f + g), backward through
    softmax(logits / tau_b + g) with the same Gumbel g (note: logits / tau + g, not
    (logits + g) / tau); tau_f defaults to 1, tau_b to `temperature` (so a schedule anneals it).
    With tau_f != 1 the forward samples come from softmax(logits / tau_f), not from q:
    `samples_from_q` is then False and `value` estimates the expectation under that tempered
    distribution.
    """

    name = "st_gumbel"

    def __init__(self, temperature: float = 1.0, forward_temperature: float | None = None,
                 backward_temperature: float | None = None, direct_term: bool = True) -> None:
        super().__init__(temperature=temperature, direct_term=direct_term)
        self.forward_temperature = (None if forward_temperature is None else
                                    check_temperature(self.name, forward_temperature))
        self.backward_temperature = (None if backward_temperature is None else
                                     check_temperature(self.name, backward_temperature))

    @property
    def decoupled(self) -> bool:
        return self.forward_temperature is not None or self.backward_temperature is not None

    @property
    def samples_from_q(self) -> bool:
        """Whether f sees samples of q (False for a forward temperature other than 1)."""
        return self.forward_temperature in (None, 1.0)

    def relax(self, p: Distribution) -> Distribution:
        # Decoupled temperatures relax logits / tau_b + g, not the Concrete family: a sampled
        # KL there uses the discrete density extended linearly in z, as straight_through does.
        if self.decoupled:
            return densities.at_samples(p, densities.LinearDiscrete)
        return densities.at_samples(
            p, lambda base: densities.StraightThroughConcrete(base, self.temperature))

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        if self.decoupled:
            return self._decoupled(q, f, num_samples, noise)
        soft = sampling.relaxed_sample(q, noise, self.temperature)
        # Parenthesised so the forward value is exactly the hard sample (soft - soft == 0).
        z = sampling.hard_of_relaxed(q, soft) + (soft - soft.detach())
        z = sampling.carrying(z, sampling.log_space(soft))  # for the densities in f
        return output(self.evaluate(f, z, num_samples, q), z.detach())

    def _decoupled(self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor
                   ) -> EstimatorOutput:
        base = sampling.base_of(q)
        binary = isinstance(base, Bernoulli)
        g = sampling.logistic(noise) if binary else sampling.gumbel(noise)
        squash = torch.sigmoid if binary else functools.partial(torch.softmax, dim=-1)
        forward = (base.logits.detach() / (self.forward_temperature or 1.0) + g).detach()
        soft = squash(base.logits / (self.backward_temperature or self.temperature) + g)
        z = sampling.hard_of_relaxed(q, squash(forward)) + (soft - soft.detach())
        return output(self.evaluate(f, z, num_samples, q), z.detach())

    def extra_repr(self) -> str:
        return (f"forward_temperature={self.forward_temperature}, backward_temperature="
                f"{self.backward_temperature}, {super().extra_repr()}")


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
