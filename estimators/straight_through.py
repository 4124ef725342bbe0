"""Straight-through estimators: a hard sample of q forward, a designed backward pass.

- straight_through (Bengio et al. 2013): the gradient flows through q's mean
  (hard + probs - stop_grad(probs)), the plain ST estimator. A sampled KL: the discrete
  densities extended linearly in z, so their gradient flows the same way.
- st_gumbel (Jang et al. 2017): the gradient flows through the relaxed sample
  (hard + soft - stop_grad(soft)). A sampled KL: the discrete densities' value at the hard
  sample, the Concrete densities' gradient at the relaxed one.

The modern members below (reinmax, gumbel_rao, gapped_st) share one shape.
Every estimator here sends f the hard sample D = the sample REINFORCE draws from the same base
noise (stream 0), so `value` is an unbiased estimate of E_q[f]; only the gradient is biased (by
design: the harness measures the bias). Each estimates grad_theta E_q[f] by M^T g, with g = df/dy
at y = D and a matrix M built from q's logits theta and D (J(p) = diag(p) - p p^T is the softmax
Jacobian). A Bernoulli with logit phi is the two-category case with logits (0, phi); its sample
is the indicator of the second category.

- reinmax (Liu et al. 2023, arXiv:2304.08612): M = 2 J(pi_1) - J(pi) / 2 with
  pi_1 = (D + softmax(theta / tau)) / 2 (Heun's second-order step). At tau = 1, since
  diag(D) = D D^T for one-hot D, 2 J((D + pi) / 2) - J(pi) / 2 = [J(pi) + (D - pi)(D - pi)^T] / 2,
  ZGR (Shekhovtsov 2023) = (ST + DARN) / 2: registered as the alias `zgr`; exact for f quadratic
  in D at tau = 1 only.
- gumbel_rao (Paulus et al. 2021, arXiv:2010.04838): the ST-Gumbel backward averaged over K
  Gumbel perturbations drawn given the sample, M = mean_k J(softmax((theta + G_k) / tau)) / tau,
  G_k ~ Gumbel | argmax(theta + G) = D.
- gapped_st (Fan et al. 2022, arXiv:2206.07235): a deterministic perturbation m lifts the sampled
  logit to max theta and keeps the others at least gamma below it; M = J(softmax((theta + m) /
  tau)) / tau.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from . import densities, distributions
from .base import Estimator, EstimatorOutput, Integrand, check_temperature, output
from .errors import EstimatorError
from .noise import (
    carrying,
    gumbel,
    gumbel_max,
    hard_of_relaxed,
    hard_sample,
    log_space,
    logistic,
    neg_gumbel,
    relaxed_sample,
    split_streams,
    stacked_streams,
)
from .relaxed import DISCRETE_SUPPORT, _relaxable, _Relaxed

ConditionalGradient = Literal["stopped", "total"]
CONDITIONAL_GRADIENTS = ("stopped", "total")


def softmax_jacobian_product(p: Tensor, delta: Tensor) -> Tensor:
    """J(p) delta = p * delta - p (p . delta) over the last dimension (J(p) is symmetric)."""
    return p * delta - p * (p * delta).sum(-1, keepdim=True)


def categorical_view(q: Distribution, sample: Tensor) -> tuple[Tensor, Tensor]:
    """(logits (*B, *event, K), one-hot sample (S, *B, *event, K)) of a Bernoulli (K = 2, logits
    (0, phi)) or one-hot categorical q; the logits keep q's graph."""
    base = distributions.base_of(q)
    if isinstance(base, Bernoulli):
        logits = torch.stack([torch.zeros_like(base.logits), base.logits], -1)
        return logits, torch.stack([1 - sample, sample], -1)
    return base.logits, sample


def from_categorical_view(q: Distribution, y: Tensor) -> Tensor:
    """The inverse of `categorical_view` for a sample-shaped y: a Bernoulli keeps category 1."""
    return y[..., 1] if isinstance(distributions.base_of(q), Bernoulli) else y


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
        soft = relaxed_sample(q, noise, self.temperature)
        # Parenthesised so the forward value is exactly the hard sample (soft - soft == 0).
        z = hard_of_relaxed(q, soft) + (soft - soft.detach())
        z = carrying(z, log_space(soft))  # for the densities in f
        return output(self.evaluate(f, z, num_samples, q), z.detach())

    def _decoupled(self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor
                   ) -> EstimatorOutput:
        base = distributions.base_of(q)
        binary = isinstance(base, Bernoulli)
        g = logistic(noise) if binary else gumbel(noise)
        squash = torch.sigmoid if binary else functools.partial(torch.softmax, dim=-1)
        forward = (base.logits.detach() / (self.forward_temperature or 1.0) + g).detach()
        soft = squash(base.logits / (self.backward_temperature or self.temperature) + g)
        z = hard_of_relaxed(q, squash(forward)) + (soft - soft.detach())
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
        mean = distributions.mean_of(q)
        z = hard_sample(q, noise) + (mean - mean.detach())
        return output(self.evaluate(f, z, num_samples, q), z.detach())


class _StraightThroughFamily(_Relaxed):
    """Hard sample of q forward (stream 0 of the noise); the gradient of f's input is M^T g."""

    needs_grad_f = True
    # tau is this estimator's own hyperparameter, not an annealed Gumbel temperature: a suite's
    # temperature schedule leaves it alone (ReinMax at tau = 1 is ZGR).
    scheduled_temperature: ClassVar[bool] = False

    def backward_term(self, q: Distribution, hard: Tensor, noise: Tensor) -> Tensor:
        """A tensor shaped like the sample, exactly 0 in value, whose gradient with respect to
        q's logits for an upstream g is M^T g."""
        logits, sample = categorical_view(q, hard)
        return from_categorical_view(q, self.categorical_term(logits, sample))

    def categorical_term(self, logits: Tensor, sample: Tensor) -> Tensor:
        """`backward_term` in the categorical view (logits (..., K), one-hot sample)."""
        raise NotImplementedError

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        hard = hard_sample(q, split_streams(noise, self.noise_streams)[0])
        z = hard + self.backward_term(q, hard, noise)  # the forward value is the hard sample
        return output(self.evaluate(f, z, num_samples, q), hard)


class ReinMax(_StraightThroughFamily):
    """ReinMax (Liu et al. 2023): M = 2 J(pi_1) - J(pi) / 2, pi_1 = (D + softmax(theta / tau)) / 2.

    Derivation: Heun's method for the integral f(D) - f(D') along the segment between samples,
    with the slope averaged at D and at the midpoint pi_1 (the first-order step is ST, M = J(pi)).
    `zgr` is this estimator at tau = 1 (see the module docstring). The paper prefers tau >= 1.
    """

    name = "reinmax"

    def categorical_term(self, logits: Tensor, sample: Tensor) -> Tensor:
        delta = logits - logits.detach()
        pi = torch.softmax(logits.detach(), -1)
        # at tau = 1 (ZGR, the default) the tempered softmax is pi itself: computed once
        tau = self.temperature
        soft = pi if tau == 1 else torch.softmax(logits.detach() / tau, -1)
        pi_1 = (sample + soft) / 2
        return (2 * softmax_jacobian_product(pi_1, delta)
                - softmax_jacobian_product(pi, delta) / 2)


class GappedST(_StraightThroughFamily):
    """Gapped straight-through (Fan et al. 2022): M = J(softmax((theta + m) / tau)) / tau with
    the stopped perturbation m = (max theta - theta) D - relu(theta - max theta + gap) (1 - D):
    theta + m has the sampled logit at the maximum and every other one at least `gap` below it,
    without resampling. Biased even for linear f (where plain ST is exact). Binary with
    |phi| = gap: the perturbation swaps the two logits when the less likely value is drawn and
    does nothing otherwise, so the backward is ST's sigma(1 - sigma) at tau = 1."""

    name = "gapped_st"

    def __init__(self, gap: float = 1.0, temperature: float = 1.0,
                 direct_term: bool = True) -> None:
        super().__init__(temperature=temperature, direct_term=direct_term)
        gap = float(gap)
        if not gap >= 0 or gap == float("inf"):
            raise EstimatorError(
                f"estimator 'gapped_st': gap must be a finite number >= 0, got {gap!r}")
        self.gap = gap

    def categorical_term(self, logits: Tensor, sample: Tensor) -> Tensor:
        theta = logits.detach()
        top = theta.max(-1, keepdim=True).values
        m = (top - theta) * sample - F.relu(theta - top + self.gap) * (1 - sample)
        soft = torch.softmax((logits + m) / self.temperature, -1)
        return soft - soft.detach()

    def extra_repr(self) -> str:
        return f"gap={self.gap}, {super().extra_repr()}"


class GumbelRao(_StraightThroughFamily):
    """Gumbel-Rao, GR-MCK (Paulus et al. 2021): the ST-Gumbel backward Rao-Blackwellized over the
    Gumbel noise given the sample, M = (1/K) sum_k J(softmax((theta + G_k) / tau)) / tau with
    G_k ~ Gumbel | argmax(theta + G_k) = D, K = `mc`.

    Conditional draws (exponential race): with T_i = E_i e^{-theta_i}, E_i ~ Exp(1), the argmin
    of T is D and min T ~ Exp(Z) independently (Z = sum e^theta), so given D the perturbed logits
    theta + G are log Z - log E_D at D and -log(E_i e^{-theta_i} + E_D / Z) elsewhere (Bernoulli:
    the logistic inverse CDF on the side of the threshold that b names). The first draw is the
    Gumbel noise of the sample itself (stream 0, whose E follow from it), the others come from
    the further noise streams 1..K-1: K = 1 is ST-Gumbel sample by sample.

    conditional_gradient: "stopped" (default) differentiates softmax((theta + G_k) / tau) with
    G_k held fixed, so M is an unbiased estimate of E[ST-Gumbel's backward | D]: the mean equals
    ST-Gumbel's at the same tau for every K, only the variance falls, and as tau -> 0 it tends
    to ZGR. "total" also differentiates G_k through its dependence on theta (the paper's wording,
    "through both theta and G_k"); that adds a term whose mean is not zero: it estimates
    d/dtheta E[softmax((theta + G) / tau) | D] instead, which vanishes as tau -> 0 (every
    conditional relaxed sample tends to D). The common implementations stop this gradient.
    """

    name = "gumbel_rao"
    scheduled_temperature = True  # an ST-Gumbel temperature: it anneals like st_gumbel's

    def __init__(self, temperature: float = 1.0, mc: int = 10,
                 conditional_gradient: ConditionalGradient = "stopped",
                 direct_term: bool = True) -> None:
        super().__init__(temperature=temperature, direct_term=direct_term)
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
            raise EstimatorError(
                f"estimator 'gumbel_rao': mc must be an integer >= 1, got {mc!r}")
        if conditional_gradient not in CONDITIONAL_GRADIENTS:
            raise EstimatorError(
                f"estimator 'gumbel_rao': conditional_gradient must be one of "
                f"{', '.join(CONDITIONAL_GRADIENTS)}, got {conditional_gradient!r}")
        self.mc = mc
        self.conditional_gradient = conditional_gradient
        self.noise_streams = mc  # one stream per conditional draw (the first is the sample's)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        assert noise is not None
        mapped = self.mapped_noise(q, noise)  # once: for the sample and for the K draws
        if isinstance(distributions.base_of(q), Bernoulli):
            hard = hard_sample(q, mapped[0])
        else:
            hard = gumbel_max(q, mapped[0])
        z = hard + self.relaxed_term(q, hard, mapped)  # the forward value is the hard sample
        return output(self.evaluate(f, z, num_samples, q), hard)

    def mapped_noise(self, q: Distribution, noise: Tensor) -> Tensor:
        """The K noise streams (K, S, ...): uniforms for a Bernoulli, log E = log(-log u) of
        the Exp(1) variates for a categorical (the Gumbel-max sample reads stream 0 of them)."""
        streams = stacked_streams(noise, self.mc)
        if isinstance(distributions.base_of(q), Bernoulli):
            return streams
        return neg_gumbel(streams)

    def perturbed(self, q: Distribution, hard: Tensor, noise: Tensor) -> Tensor:
        """theta + G_k given the sample `hard`, (K, S, *B, *event[, categories]): differentiable
        in the logits for "total"; for "stopped", G_k is held fixed (theta + sg(G_k))."""
        return self._perturbed(q, hard, self.mapped_noise(q, noise))

    def _perturbed(self, q: Distribution, hard: Tensor, mapped: Tensor) -> Tensor:
        base = distributions.base_of(q)
        total = self.conditional_gradient == "total"
        # "stopped" draws from detached logits: a graph through the draw would be thrown away
        logits = base.logits if total else base.logits.detach()
        if isinstance(base, Bernoulli):
            y = binary_conditional(logits, hard, mapped)
        else:
            y = categorical_conditional(logits, hard, mapped)
        if total:
            return y
        return y + (base.logits - logits)

    def relaxed_term(self, q: Distribution, hard: Tensor, mapped: Tensor) -> Tensor:
        """`backward_term` from the mapped noise (`mapped_noise`)."""
        y = self._perturbed(q, hard, mapped) / self.temperature
        if isinstance(distributions.base_of(q), Bernoulli):
            soft = torch.sigmoid(y).mean(0)
        else:
            soft = torch.softmax(y, -1).mean(0)
        return soft - soft.detach()

    def backward_term(self, q: Distribution, hard: Tensor, noise: Tensor) -> Tensor:
        return self.relaxed_term(q, hard, self.mapped_noise(q, noise))

    def extra_repr(self) -> str:
        return (f"mc={self.mc}, conditional_gradient={self.conditional_gradient!r}, "
                f"{super().extra_repr()}")


def binary_conditional(phi: Tensor, b: Tensor, u: Tensor) -> Tensor:
    """phi + L for logistic L given [phi + L > 0] = b, one per uniform in u (K, S, *B); u[0] is
    the noise b was drawn from, so the first draw is phi + logistic(u[0]) itself.

    With s = 2b - 1 and a = s phi, the drawn side has probability sigmoid(a); t in (0, 1) is the
    position within it counted from the far end, and phi + L = s (a + log(1 - t sigmoid(a))
    - log t - log sigmoid(a)): t -> 0 is the far tail, t = 1 the threshold."""
    s = 2 * b - 1
    a = s * phi
    with torch.no_grad():
        own = torch.where(b > 0, 1 - u[0], u[0]) / torch.sigmoid(a)  # t of the sample's noise
        t = torch.cat([own.clamp(max=1.0)[None], u[1:]])
    log_near = torch.logaddexp(F.logsigmoid(-a), torch.log1p(-t) + F.logsigmoid(a))
    return s * (a + log_near - torch.log(t) - F.logsigmoid(a))


def categorical_conditional(theta: Tensor, d: Tensor, log_e: Tensor) -> Tensor:
    """theta + G given argmax(theta + G) = d (one-hot), one draw per set of log E_i in log_e
    (K, S, *B, *event, categories), the logs of Exp(1) variates E = -log u
    (`neg_gumbel(u)`); log_e[0] is the noise d was drawn from (its own draw)."""
    log_z = torch.logsumexp(theta, -1, keepdim=True)
    # The sample's own E (from detached logits, no graph): log T_i = log E'_i - theta_i;
    # T_D = min T; E_D = Z T_D and, by memorylessness, E_i = (T_i - T_D) e^{theta_i}, i != D.
    # A tie T_i = T_D (or D off the argmin by rounding) gives E_i = 0, log E_i = -inf: the
    # entries at D are picked with `where`, never by multiplying by d (-inf x 0 is NaN).
    chosen = d > 0
    log_t = log_e[0] - theta.detach()
    log_t_min = torch.where(chosen, log_t, 0.0).sum(-1, keepdim=True)
    gap = torch.log1p(-torch.exp(log_t_min - log_t).clamp(max=1.0))
    own = torch.where(chosen, log_z.detach() + log_t_min, log_e[0] + gap)
    log_e = torch.cat([own[None], log_e[1:]])
    log_e_d = torch.where(chosen, log_e, 0.0).sum(-1, keepdim=True)
    others = -torch.logaddexp(log_e - theta, log_e_d - log_z)
    return torch.where(d > 0, log_z - log_e_d, others)


__all__ = [
    "GappedST",
    "GumbelRao",
    "ReinMax",
    "binary_conditional",
    "categorical_conditional",
    "categorical_view",
    "softmax_jacobian_product",
]
