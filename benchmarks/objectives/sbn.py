"""Sigmoid belief nets with one or more stochastic layers of Bernoulli units, estimated nested.

Generative model p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1), a learned factorised
prior on the top layer; inference q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}). Every
conditional is a network: `hidden=()` the linear SBN, tanh hidden layers between stochastic
layers the nonlinear one (the models of REBAR, RELAX, ARM and DisARM).

Nested estimation. The ELBO splits by layer,

    ELBO = E_{q(z_1|x)}[ f_1(z_1) ],
    f_k(z_k) = log p(z_{k-1} | z_k) - log q(z_k | z_{k-1}) + E_{q(z_{k+1}|z_k)}[ f_{k+1}(z_{k+1}) ]
    f_L(z_L) = log p(z_{L-1} | z_L) - log q(z_L | z_{L-1}) + log p(z_L)

(z_0 = x): the terms of level k are those that need z_k and nothing above it. Each level's
expectation is estimated by its own copy of the estimator, so f_k's value is the inner copy's
Monte Carlo estimate of the inner expectation and its gradient the inner surrogate's: the outer
score-function weight is the estimate, unbiased because the inner estimate is, given z_k. With
kl="analytic" the top layer's -log q + log p(z_L) is replaced by -KL(q(z_L|.) || p(z_L)) in
closed form; the lower layers' terms are always sampled (their prior depends on the layer above).

`evaluations`: the number of (z_1, ..., z_L) configurations f is evaluated at per example, the
product of the levels' counts (RLOO with S = 2: 2 x 2 = 4; ARM and DisARM, one pair per level:
2 x 2 = 4; REINFORCE with S = 1: 1).

Estimator state. Each level gets its own (shallow) copy of the estimator at every call; a copy
cannot carry state across calls or be trained by the caller's optimizer, so on several layers
estimators with state (EMA baselines, learned baselines and control variates: NVIL, REBAR,
RELAX) are refused, and so are estimators that differentiate f in z (f of an outer level is
itself a Monte Carlo estimate). The inner levels draw their own noise: gradient statistics on
several layers run in the seeded loop, not vectorized.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from estibench.estimators import (
    Estimator,
    EstimatorError,
    EstimatorOutput,
    distributions,
    kl_divergence,
)
from estibench.estimators.exact import enumerate_support
from estibench.estimators.score_function import Reinforce

from .base import DiscreteLatentModel, ObjectiveError
from .likelihoods import bernoulli_log_likelihood
from .networks import mlp

# The nested ELBO samples -log q + log p at every level; only the top level's KL term has a
# closed form. The Monte Carlo KL estimators k2 and k3 (objectives.kl) are not offered here.
SBN_KL_CHOICES = ("analytic", "sampled", "k1")


def _check_kl(kl: str) -> None:
    if kl not in SBN_KL_CHOICES:
        raise ObjectiveError(f"kl must be one of {', '.join(SBN_KL_CHOICES)} for the sigmoid "
                             f"belief net, got {kl!r}")


def bernoulli(logits: Tensor) -> Distribution:
    """Independent Bernoulli units with these logits (the last dimension is the event)."""
    return Independent(distributions.bernoulli(logits), 1, validate_args=False)


def _units(units: int | Sequence[int], layers: int) -> tuple[int, ...]:
    sizes = (units,) * layers if isinstance(units, int) else tuple(units)
    if len(sizes) != layers or not all(
            isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in sizes):
        raise ObjectiveError(f"units must be an integer >= 1 or a list of {layers} such "
                             f"integers (one per stochastic layer), got {units!r}")
    return sizes


def state_names(estimator: Estimator) -> list[str]:
    """The estimator's parameters and buffers that carry state from call to call
    (REINFORCE registers its EMA buffers whatever the baseline; only "ema" uses them)."""
    names = [n for n, _ in estimator.named_parameters()] + [
        n for n, _ in estimator.named_buffers()]
    if isinstance(estimator, Reinforce) and estimator.baseline != "ema":
        names = [n for n in names if not n.startswith("ema_")]
    return names


class SigmoidBeliefNet(DiscreteLatentModel):
    name = "sbn"

    def __init__(
        self, input_dim: int = 64, layers: int = 1, units: int | Sequence[int] = 16,
        hidden: int | Sequence[int] = (), activation: str = "tanh", kl: str = "analytic",
        bound: str = "elbo", max_configurations: int = 4096,
    ) -> None:
        super().__init__(kl, max_configurations, bound)  # type: ignore[arg-type]
        _check_kl(kl)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ObjectiveError(f"layers must be an integer >= 1, got {layers!r}")
        if bound == "iwae" and layers > 1:
            raise ObjectiveError(f"bound='iwae' needs layers = 1 (the IWAE estimators weight "
                                 f"joint samples, not nested estimates), got layers={layers}")
        self.input_dim, self.layers = int(input_dim), layers
        self.units = _units(units, layers)
        sizes = (self.input_dim, *self.units)
        # encoder[k]: z_k -> logits of z_{k+1}; decoder[k]: z_{k+1} -> logits of z_k (z_0 = x).
        self.encoder = nn.ModuleList(
            mlp(sizes[k], hidden, sizes[k + 1], activation) for k in range(layers))
        self.decoder = nn.ModuleList(
            mlp(sizes[k + 1], hidden, sizes[k], activation) for k in range(layers))
        self.prior_logits = nn.Parameter(torch.zeros(self.units[-1]))
        # An outer level's f is a Monte Carlo estimate over the levels above it.
        self.differentiable_integrand = layers == 1

    @property
    def num_configurations(self) -> int:
        return 2 ** sum(self.units)

    def example_input(self) -> Tensor:
        return torch.zeros(1, self.input_dim)

    def posterior_params(self, x: Tensor | None) -> Tensor:
        """The first layer's logits (B, units[0])."""
        assert x is not None
        return self.encoder[0](x)

    def distribution(self, params: Tensor) -> Distribution:
        return bernoulli(params)

    def prior(self, x: Tensor | None = None) -> Distribution:
        """p(z_L), the top layer's factorised prior (for layers = 1, the prior of z)."""
        return bernoulli(self.prior_logits)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z_1) for z_1 of shape (S, B, units[0]): (S, B)."""
        return bernoulli_log_likelihood(self.decoder[0](z), x)

    # Applicability ------------------------------------------------------------------------
    def check(self, estimator: Estimator) -> None:
        super().check(estimator)
        self.check_nested(estimator)

    def check_nested(self, estimator: Estimator) -> None:
        """On several layers, refuse estimators whose state a per-level copy would split."""
        if self.layers == 1:
            return
        state = state_names(estimator)
        if state:
            raise EstimatorError(
                f"estimator '{estimator.name}' has state ({', '.join(state)}); objective "
                f"'{self.name}' with layers={self.layers} estimates each layer with its own "
                "copy of the estimator, which can neither share that state with the other "
                "layers nor be trained by the caller: stateless estimators only")

    # The ELBO, nested -----------------------------------------------------------------------
    def estimate(self, x, estimator, num_samples=1, *, noise=None, params=None):  # type: ignore[override]
        self.check_nested(estimator)
        return super().estimate(x, estimator, num_samples, noise=noise, params=params)

    def elbo(self, x, estimator, num_samples=1, kl=None, *, noise=None, params=None):  # type: ignore[override]
        """The ELBO estimated level by level (module docstring); `noise` is the first
        layer's, the levels above draw their own."""
        kl = kl or self.kl
        _check_kl(kl)
        # Stateless estimators only (check_nested): a shallow copy per level is enough to give
        # each its own evaluation counter, without copying modules on every step.
        chain = [estimator, *(copy.copy(estimator) for _ in range(self.layers - 1))]
        logits = self.posterior_params(x) if params is None else params
        return self._level(0, x, logits, chain, num_samples, kl, noise)

    def _level(self, k: int, below: Tensor, logits: Tensor, chain: list[Estimator],
               num_samples: int, kl: str, noise: Tensor | None) -> EstimatorOutput:
        """E_{q(z_{k+1} | below)}[f_{k+1}] estimated by chain[k] (z_0 = x; k counts from 0)."""
        est, q, top = chain[k], bernoulli(logits), k == self.layers - 1
        above = 1  # evaluations of the levels above, per sample of this one

        def integrand(z: Tensor) -> Tensor:
            nonlocal above
            if k == 0:
                value = self.log_likelihood(below, z)
            else:  # log p(z_k | z_{k+1}) at z_k as the estimator that drew it sees it
                value = distributions.log_prob(chain[k - 1].relax(bernoulli(self.decoder[k](z))),
                                          below)
            if top and kl == "analytic":
                return value
            value = value - est.log_q(q, z)
            if top:
                return value + distributions.log_prob(est.relax(self.prior()), z)
            inner = self._level(k + 1, z, self.encoder[k + 1](z), chain, num_samples, kl, None)
            above = int(inner.evaluations or 1)
            # Forward: the inner Monte Carlo estimate; gradient: the inner surrogate's.
            return value + inner.value + (inner.loss - inner.loss.detach())

        out = est(q, integrand, num_samples, noise=noise)
        if top and kl == "analytic":
            out = out.plus(-kl_divergence(q, self.prior()))
        return dataclasses.replace(out, evaluations=int(out.evaluations or 0) * above)

    # Evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def log_weights(self, x: Tensor, num_samples: int) -> Tensor:
        """log p(x, z) - log q(z | x) at joint samples z_1, ..., z_L drawn down q: (S, B)."""
        q = self.posterior(x)
        z = q.sample((num_samples,))
        log_w = self.log_likelihood(x, z) - q.log_prob(z)
        for k in range(1, self.layers):
            q_next = bernoulli(self.encoder[k](z))
            z_next = q_next.sample()
            log_w += bernoulli(self.decoder[k](z_next)).log_prob(z) - q_next.log_prob(z_next)
            z = z_next
        return log_w + self.prior().log_prob(z)

    @torch.no_grad()
    def log_marginal(self, x: Tensor, chunk: int = 256) -> Tensor:
        """log p(x) by enumeration down the chain: log p(z_L) over the top layer's
        configurations, log p(z_k) = logsumexp_{z_{k+1}} [log p(z_k | z_{k+1}) + log p(z_{k+1})]
        (a K_k x K_{k+1} table per layer), then logsumexp_{z_1} [log p(x | z_1) + log p(z_1)]."""
        self._require_small()
        above = enumerate_support(self.prior())  # (K_L, units[-1])
        marginal = self.prior().log_prob(above)  # (K_L,)
        for k in range(self.layers - 1, 0, -1):
            configs = enumerate_support(bernoulli(self.prior_logits.new_zeros(self.units[k - 1])))
            table = bernoulli(self.decoder[k](above)).log_prob(configs[:, None])  # (K_k, K_k+1)
            marginal = torch.logsumexp(table + marginal, 1)
            above = configs
        z1 = above[:, None].expand(above.shape[0], x.shape[0], above.shape[-1])
        parts = [self.log_likelihood(x, z) + m[:, None]
                 for z, m in zip(z1.split(chunk), marginal.split(chunk), strict=True)]
        return torch.logsumexp(torch.cat(parts), 0)
