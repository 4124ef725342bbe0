"""The densities relaxed and straight-through estimators evaluate at the samples f receives.

A sampled KL inside f (log p(z) - log q(z)) must be a density of the variable f is given, and
differentiable along the path the estimator's gradient takes.

Concrete densities, in log space (Maddison et al. 2017, appendix C). A relaxed sample is drawn
as a log-space variable v and handed to f in probability space: categorical v = y =
log_softmax((logits + g) / tau), f sees x = exp(y); binary v = s = (logits + l) / tau (l
logistic), f sees x = sigmoid(s). At small tau the components of x underflow in float32, and a
density computed from x takes the log of 0; computed from v it is finite. So the sample carries
v (`estibench.estimators.noise.log_space`), and the densities read it.

ExpConcrete, derived. Write a = logits, p = a + g (K independent Gumbel(a_k)), c =
logsumexp(p / tau), so y = p / tau - c and p_k = tau (y_k + c). In the coordinates (y_1..y_{K-1},
c) the Jacobian of p is tau^K / x_K; integrating the Gumbel density prod_k exp(a_k - p_k -
e^{a_k - p_k}) over c (a Gamma(K) integral, substituting t = e^{-tau c} sum_k e^{a_k - tau y_k})
leaves the density of (y_1..y_{K-1}) as e^{-y_K} times

    log p(y) = log (K-1)! + (K-1) log tau + sum_k (a_k - tau y_k)
               - K logsumexp_k (a_k - tau y_k),

the ExpConcrete density (the symmetric form, without the e^{-y_K}). With x_k = e^{y_k} on
x_1..x_{K-1}, the Concrete density of x is then log p(y) - sum_k y_k, computed from y. Binary:
s = (a + l) / tau has log p(s) = log tau + log sigmoid(a - tau s) + log sigmoid(tau s - a) (the
logistic density at l = tau s - a, times tau), and x = sigmoid(s) has log p(x) = log p(s) - log
sigmoid(s) - log sigmoid(-s).

Straight-through densities. `st_gumbel` feeds f the hard sample and differentiates through the
relaxed one; its densities do the same: forward value the discrete log-probability at the hard
sample (so the reported ELBO is that of the discrete model), gradient that of the Concrete
density at the relaxed sample (the density Pyro's RelaxedOneHotCategoricalStraightThrough
evaluates, at the relaxed sample it keeps with the hard one). Plain
`straight_through` has no relaxed sample, its gradient flows through z = hard + (probs -
stop_grad(probs)); its densities are the discrete log-probabilities extended linearly in z
(z . log-probabilities; torch's Bernoulli.log_prob already is), whose gradient through z then
reaches q's parameters (torch's OneHotCategorical.log_prob takes an argmax and passes none).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, OneHotCategorical

from .noise import log_space


def exp_concrete_log_prob(logits: Tensor, temperature: float, y: Tensor) -> Tensor:
    """ExpConcrete log-density of y = log_softmax((logits + g) / tau) (module docstring)."""
    k = logits.shape[-1]
    score = logits - temperature * y
    return (math.lgamma(k) + (k - 1) * math.log(temperature)
            + score.sum(-1) - k * torch.logsumexp(score, -1))


def concrete_log_prob(logits: Tensor, temperature: float, y: Tensor) -> Tensor:
    """Concrete log-density of x = exp(y), computed from y: exp_concrete(y) - sum_k y_k."""
    return exp_concrete_log_prob(logits, temperature, y) - y.sum(-1)


def logit_concrete_log_prob(logits: Tensor, temperature: float, s: Tensor) -> Tensor:
    """Log-density of the binary Concrete's logit s = (logits + logistic) / tau."""
    d = logits - temperature * s
    return math.log(temperature) + F.logsigmoid(d) + F.logsigmoid(-d)


def binary_concrete_log_prob(logits: Tensor, temperature: float, s: Tensor) -> Tensor:
    """Binary Concrete log-density of x = sigmoid(s), computed from s."""
    return logit_concrete_log_prob(logits, temperature, s) - F.logsigmoid(s) - F.logsigmoid(-s)


class _At(Distribution):
    """A density over the samples of `base` (Bernoulli or OneHotCategorical): only `log_prob`,
    with base's batch and event shapes; subclasses say what it is at a sample."""

    arg_constraints: dict = {}

    def __init__(self, base: Distribution) -> None:
        self.base: Any = base  # Bernoulli or OneHotCategorical: their logits are read
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def binary(self) -> bool:
        return isinstance(self.base, Bernoulli)


class Concrete(_At):
    """The Concrete relaxation of `base` at `temperature`: log_prob(x) reads the log-space
    variable x carries (computing it from x when it carries none)."""

    def __init__(self, base: Distribution, temperature: float) -> None:
        super().__init__(base)
        self.temperature = float(temperature)

    def log_prob(self, value: Tensor) -> Tensor:
        v = log_space(value)
        logits = self.base.logits
        if self.binary:
            v = torch.logit(value) if v is None else v
            return binary_concrete_log_prob(logits, self.temperature, v)
        return concrete_log_prob(logits, self.temperature, value.log() if v is None else v)


class StraightThroughConcrete(Concrete):
    """Forward: the discrete log-probability at the hard sample; gradient: the Concrete
    density's at the relaxed sample the hard one carries."""

    def log_prob(self, value: Tensor) -> Tensor:
        if log_space(value) is None:
            raise ValueError("a straight-through Concrete density needs the relaxed sample: "
                             "evaluate it at the sample st_gumbel gave f")
        relaxed = super().log_prob(value)
        hard = _linear_log_prob(self.base, value.detach())
        return hard.detach() + (relaxed - relaxed.detach())


class LinearDiscrete(_At):
    """The discrete log-probability extended linearly in z (module docstring)."""

    def log_prob(self, value: Tensor) -> Tensor:
        return _linear_log_prob(self.base, value)


def _linear_log_prob(base: Any, z: Tensor) -> Tensor:
    if isinstance(base, Bernoulli):
        return base.log_prob(z)
    return (z * base.logits).sum(-1)  # Categorical keeps its logits normalized


def at_samples(q: Distribution, build) -> Distribution:
    """`build(base)` for the Bernoulli / OneHotCategorical inside `q`, Independent kept."""
    if isinstance(q, Independent):
        return Independent(at_samples(q.base_dist, build), q.reinterpreted_batch_ndims,
                           validate_args=False)
    assert isinstance(q, (Bernoulli, OneHotCategorical)), type(q).__name__
    return build(q)


__all__ = [
    "Concrete",
    "LinearDiscrete",
    "StraightThroughConcrete",
    "at_samples",
    "binary_concrete_log_prob",
    "concrete_log_prob",
    "exp_concrete_log_prob",
    "logit_concrete_log_prob",
]
