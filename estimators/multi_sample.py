"""Multi-sample estimators of the IWAE-K bound L_K = E log (1/K) sum_k w_k.

f returns the per-sample log-weights log w_k = log p(x, z_k) - log q(z_k) (S = K samples, shape
(K, *B)), built by the objective with `estimator.log_q`, which stops q's parameters in log q when
`direct_term` is False; `value` is the bound's estimate logsumexp_k f - log K.

- vimco (Mnih & Rezende 2016): the score-function estimator with leave-one-out baselines, for
  any q that samples and has a log-density.

For reparameterized q, with w~_k = softmax_k(log w) and z_k = g(eps_k, phi):
- iwae (Burda et al. 2016): autograd of logsumexp_k f(z_k) - log K, i.e.
  sum_k w~_k d/dphi log w_k (the total derivative; unbiased).
- iwae with direct_term=False, "sticking the landing" on IWAE (Roeder et al. 2017):
  sum_k w~_k d_z log w_k d_phi z_k with log q's parameters stopped. For K = 1 the dropped term
  E_q[d_phi log q(z)] = 0, so it is unbiased; for K > 1 the weights w~_k make the dropped term's
  mean non-zero: biased (Tucker et al. 2019, appendix), so such an instance has unbiased=False.
- dreg (Tucker et al. 2019, arXiv:1810.04152): the score term of the IWAE inference-network
  gradient, sum_k w~_k d_phi log q(z_k) at fixed z, equals in expectation (reparameterizing it
  once more) sum_k (w~_k^2 - w~_k) d_z log w_k d_phi z_k, so the inference network gets the
  unbiased sum_k w~_k^2 d_z log w_k d_phi z_k, and the model parameters keep the IWAE gradient
  sum_k w~_k grad_theta log w_k. One evaluation of f at the detached samples: its pullback with
  cotangent w~^2 gives the z-path, f's own graph the model path (the pullback by autograd in
  eager mode, by `torch.func.vjp` inside the vectorized statistics' transforms).
  At q = the exact posterior log w_k is constant in z, so the inference-network estimate is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.func import vjp

from .base import Estimator, EstimatorOutput, Integrand, inside_transform
from .errors import EstimatorError
from .noise import hard_sample, reparameterized_sample


class VIMCO(Estimator):
    """VIMCO (Mnih & Rezende, "Variational Inference for Monte Carlo Objectives", ICML 2016,
    arXiv:1602.06725): the gradient of the IWAE-K bound E log (1/K) sum_k e^{l_k}, where f
    returns the per-sample log-weights l_k = log p(x, h_k) - log q(h_k) and K = num_samples >= 2.

    Identity: with L = log mean_k e^{l_k}, grad E[L] = E[sum_j L grad log q(h_j) + grad L],
    and grad L = sum_j w_j grad l_j (w = softmax(l), h fixed). Any term of the learning signal
    of h_j that does not depend on h_j has zero mean against grad log q(h_j), so L is replaced
    by L - L_{-j}, where L_{-j} is L with l_j swapped for the mean of the other l (a geometric
    mean of their weights): unbiased, with a per-sample baseline.

    Surrogate: L + sum_j sg(L - L_{-j}) (log q(h_j) - sg(log q(h_j))); its value is the bound's
    estimate L, not the mean of f. The term grad L needs f's own dependence on q's parameters
    (the -log q inside the log-weights), so the direct term is always kept: with K > 1 its
    expectation is not zero (E sum_j w_j grad log q(h_j) != 0), and dropping it biases VIMCO.

    Cost: K evaluations, plus a K x K leave-one-out logsumexp and log q of the samples for the
    score, a fixed number of small tensor operations per estimate. On the digits Bernoulli VAE
    (8 bits, linear networks, batch 32, K = 2; floor 1.5 ms) that costs about 1.25x
    REINFORCE's time over the floor per evaluation; it does not grow with the networks.
    """

    name = "vimco"
    supports = "any distribution with sample() and log_prob(), with num_samples (K) >= 2"
    estimates = "iwae"

    def __init__(self) -> None:
        super().__init__(direct_term=True)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        if num_samples < 2:
            raise EstimatorError(
                f"estimator 'vimco' needs num_samples (K) >= 2 for its leave-one-out "
                f"baselines, got {num_samples}"
            )
        z = hard_sample(q, noise) if noise is not None else q.sample((num_samples,))
        log_w = self.evaluate(f, z, num_samples, q)
        bound = torch.logsumexp(log_w, 0) - math.log(num_samples)
        held = log_w.detach()
        # others[j, i] = l_i, with l_j replaced by the mean of the others (i != j).
        diagonal = torch.eye(num_samples, dtype=torch.bool, device=held.device)
        diagonal = diagonal.reshape(num_samples, num_samples, *[1] * (held.dim() - 1))
        loo_mean = (held.sum(0, keepdim=True) - held) / (num_samples - 1)
        others = torch.where(diagonal, loo_mean.unsqueeze(1), held)  # held broadcast over j
        baselines = torch.logsumexp(others, 1) - math.log(num_samples)  # L_{-j}, (K, *B)
        log_q = self.sample_log_prob(q, z)
        signal = bound.detach() - baselines
        loss = bound + (signal * (log_q - log_q.detach())).sum(0)
        return EstimatorOutput(loss, bound.detach(), z)


__all__ = ["VIMCO"]


REPARAMETERIZABLE = "reparameterizable distributions (has_rsample=True), e.g. Normal"


class _IWAEPathwise(Estimator):
    estimates = "iwae"
    supports = REPARAMETERIZABLE

    def applies_to(self, q: Distribution) -> bool:
        return bool(q.has_rsample)

    def sample(self, q: Distribution, num_samples: int, noise: Tensor | None) -> Tensor:
        if noise is not None:
            return reparameterized_sample(q, noise)
        return q.rsample((num_samples,))


def iwae_value(log_w: Tensor) -> Tensor:
    """The IWAE estimate log mean_k exp(log w_k), over dim 0."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def weights_and_value(log_w: Tensor) -> tuple[Tensor, Tensor]:
    """(w~ = softmax_k log w_k, `iwae_value`) of detached log-weights (K, *B), from one
    log_softmax: the largest log-weight and the largest log w~ sit at the same k, where
    log w_max - log w~_max = logsumexp_k log w_k, the sum logsumexp computes. Six operations
    where softmax and torch.logsumexp dispatch about 20 (its guards against infinite maxima);
    in a training step each small operation costs ~10 us on CPU. Non-finite log-weights give
    nan here, as they give nan weights."""
    log_normalized = torch.log_softmax(log_w, 0)
    log_sum = log_w.amax(0) - log_normalized.amax(0)
    return log_normalized.exp(), log_sum - math.log(log_w.shape[0])


class IWAE(_IWAEPathwise):
    """Pathwise gradient of the IWAE-K bound (K = num_samples). direct_term=False is STL-IWAE,
    biased for K > 1 (see the module docstring): that instance reports unbiased=False."""

    name = "iwae"

    def __init__(self, direct_term: bool = True) -> None:
        super().__init__(direct_term=direct_term)
        self.unbiased = direct_term  # STL-IWAE: unbiased only for K = 1

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        z = self.sample(q, num_samples, noise)
        bound = iwae_value(self.evaluate(f, z, num_samples, q))
        return EstimatorOutput(bound, bound.detach(), z.detach())


class DReG(_IWAEPathwise):
    """Doubly reparameterized gradient of the IWAE-K bound (Tucker et al. 2019): w~^2 weights
    through z for the inference network, the IWAE gradient for the model parameters. log q's
    parameters are always stopped inside f (direct_term is False): that is the method."""

    name = "dreg"

    def __init__(self) -> None:
        super().__init__(direct_term=False)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        z = self.sample(q, num_samples, noise)
        # f at the detached samples: its graph reaches the model parameters only; the pullback
        # gives d_z log w_k, which is carried to q's parameters through z below.
        held = z.detach()
        if inside_transform() or not torch.is_grad_enabled():
            # torch.func.vjp composes with the vectorized statistics' vmap and grad ...
            pulled = vjp(lambda s: self.evaluate(f, s, num_samples, q), held)
            log_w, pullback = pulled[0], pulled[1]
        else:  # ... and costs 1.5x the whole step in eager mode, where autograd does the same
            log_w = self.evaluate(f, held.requires_grad_(True), num_samples, q)

            def pullback(cotangent: Tensor) -> tuple[Tensor, ...]:
                return torch.autograd.grad(log_w, held, cotangent, retain_graph=True,
                                           allow_unused=True, materialize_grads=True)
        weights, bound = weights_and_value(log_w.detach())
        (through_z,) = pullback(weights**2)
        # One sum over the samples and the event dimensions.
        sample_and_event = (0, *range(z.dim() - len(q.event_shape), z.dim()))
        surrogate = (weights * log_w).sum(0) + (through_z.detach() * z).sum(sample_and_event)
        # The value is the bound's; (bound - sg(surrogate)) carries no graph: one add node.
        return EstimatorOutput(surrogate + (bound - surrogate.detach()), bound, z.detach())
