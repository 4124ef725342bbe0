"""Estimators that enumerate part of a discrete support: IndeCateR and the unordered set.

Both see a discrete q as variables x_d (d = 1..D, the dimensions an `Independent` adds; D = 1
without one), each with K values: the categories of a (OneHot)Categorical, or {0, 1} for a
Bernoulli, whose probabilities are (1 - sigma(phi), sigma(phi)).
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand
from .errors import EstimatorError, UnsupportedDistributionError
from .exact import support_size
from .noise import draw_noise, gumbel_argmax, hard_sample, logistic, neg_gumbel

DISCRETE = (Bernoulli, Categorical, OneHotCategorical)


def _layout(q: Distribution) -> tuple[int, int, int]:
    """(number of variable dimensions an Independent adds, D variables, K values each)."""
    values, variables = support_size(q)
    return len(q.event_shape) - len(distributions.base_of(q).event_shape), variables, values


def log_probs(q: Distribution) -> Tensor:
    """log P(x_d = k), shape (*B, D, K), differentiable in q's parameters."""
    base = distributions.base_of(q)
    _, variables, k = _layout(q)
    if isinstance(base, Bernoulli):
        logits = base.logits.reshape(*q.batch_shape, variables)
        return torch.stack([torch.nn.functional.logsigmoid(-logits),
                            torch.nn.functional.logsigmoid(logits)], -1)
    # torch's Categorical (and `distributions.one_hot_categorical`) keep the logits normalized, and
    # log_softmax of normalized logits is the identity in value and in gradient to the raw ones
    return base.logits.reshape(*q.batch_shape, variables, k)


def to_values(q: Distribution, index: Tensor) -> Tensor:
    """Samples of q (n, *B, *event) from category indices (n, *B, D)."""
    base = distributions.base_of(q)
    dims, _, k = _layout(q)
    shape = (*index.shape[:-1], *q.event_shape[:dims])
    if isinstance(base, OneHotCategorical):
        return distributions.one_hot(index, k, base.logits.dtype).reshape(*shape, k)
    if isinstance(base, Bernoulli):
        return index.to(base.logits.dtype).reshape(shape)
    return index.reshape(shape)


def sample_index(q: Distribution, u: Tensor) -> Tensor:
    """The category indices (S, *B, D) of `hard_sample(q, u)`, for a categorical
    q without its one-hot (the same Gumbel-max draw)."""
    base = distributions.base_of(q)
    if isinstance(base, Bernoulli):
        return to_index(q, hard_sample(q, u))
    index = gumbel_argmax(q, neg_gumbel(u))
    return index.reshape(u.shape[0], *q.batch_shape, -1)  # the D variables, flattened


def to_index(q: Distribution, z: Tensor) -> Tensor:
    """Category indices (n, *B, D) of samples z (n, *B, *event)."""
    base = distributions.base_of(q)
    _, variables, _ = _layout(q)
    index = z.argmax(-1) if isinstance(base, OneHotCategorical) else z.long()
    return index.reshape(z.shape[0], *q.batch_shape, variables)


class IndeCateR(Estimator):
    """IndeCateR (De Smet, Sansone & Zuidberg Dos Martires, "Differentiable Sampling of
    Categorical Distributions Using the CatLog-Derivative Trick", NeurIPS 2023,
    arXiv:2311.12569), for independent categorical or Bernoulli variables.

    Identity: E_q[f] = sum_k pi_d(k) E[f(x) | x_d = k] for each d, and the conditional
    expectation does not depend on pi_d, so d/dtheta_d E_q[f] = sum_k grad pi_d(k) fbar_{d,k}
    with fbar_{d,k} = (1/S) sum_s f(x^s with x_d <- k), x^s ~ q (unbiased; exact, with zero
    variance, for D = 1). Costs S x D x K evaluations, made in one call of f.

    Surrogate: (1/D) sum_{d,k} sg(pi_d(k)) fbar_{d,k} (the Rao-Blackwellized value, whose
    gradient carries f's own parameter dependence) + sum_{d,k} (pi_d(k) - sg(pi_d(k)))
    sg(fbar_{d,k}).
    """

    name = "indecater"
    supports = ("Categorical, OneHotCategorical and Bernoulli variables, optionally "
                "independent inside Independent")

    def __init__(self, direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)

    def applies_to(self, q: Distribution) -> bool:
        return type(distributions.base_of(q)) in DISCRETE

    def substitution(self, variables: int, k: int, batch: int, device: torch.device
                     ) -> tuple[Tensor, Tensor]:
        """mask (D, 1, 1, *[1] * batch, D), variable d's own slot, and the values (1, K, 1,
        ..., 1) it takes: constants of the shapes (`Estimator.constant`)."""
        def build() -> tuple[Tensor, Tensor]:
            mask = torch.eye(variables, dtype=torch.bool, device=device)
            return (mask.reshape(variables, 1, 1, *[1] * batch, variables),
                    torch.arange(k, device=device).reshape(1, k, 1, *[1] * batch, 1))

        return self.constant(("substitution", variables, k, batch, device), build)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        u = draw_noise(q, num_samples) if noise is None else noise
        index = sample_index(q, u)  # (S, *B, D)
        _, variables, k = _layout(q)
        # substituted[d, c, s, ..., e] = index[s, ..., e], except variable e = d set to c.
        mask, value = self.substitution(variables, k, len(q.batch_shape), index.device)
        substituted = torch.where(mask, value, index)  # (D, K, S, *B, D)
        points = to_values(q, substituted.flatten(0, 2))
        fz = self.evaluate_many(f, points, q).unflatten(0, (variables, k, num_samples))
        fbar = fz.mean(2).movedim((0, 1), (-2, -1))  # (*B, D, K)
        probs = log_probs(q).exp()
        value_term = (probs.detach() * fbar).sum(-1).mean(-1)
        score = ((probs - probs.detach()) * fbar.detach()).sum((-2, -1))
        return EstimatorOutput(value_term + score, value_term.detach(), points.detach())


MAX_SET_SIZE = 6  # the probability of a set sums over its k! orderings


@functools.lru_cache(maxsize=64)
def _orders(m: int, device: torch.device) -> Tensor:
    """The m! orderings of m members, (m!, m): built once per size and device (a Python
    list of permutations turned into a tensor on every call costs more than the sums)."""
    return torch.tensor(list(itertools.permutations(range(m))), device=device)


def set_log_prob(log_p: Tensor, log_rest: Tensor) -> Tensor:
    """log of the probability of drawing the members (log-probabilities log_p, (..., m)) in
    any order without replacement, when every value outside them but `log_rest` (..., mass
    of the values that are neither members nor excluded) is excluded:
    sum over orders of prod_t p_t / (rest + sum of the members not yet drawn). Sums of
    positive terms only (no 1 - p), so it stays accurate for probabilities near 1."""
    m = log_p.shape[-1]
    if m == 0:
        return torch.zeros_like(log_rest)
    if m == 1:  # p / (rest + p): the one ordering, without the permutation machinery
        return log_p[..., 0] - torch.logaddexp(log_p[..., 0], log_rest)
    if m == 2:  # p1 p2 / (rest + p1 + p2) (1 / (rest + p2) + 1 / (rest + p1))
        log_p1, log_p2 = log_p[..., 0], log_p[..., 1]
        after_1, after_2 = torch.logaddexp(log_p2, log_rest), torch.logaddexp(log_p1, log_rest)
        return (log_p1 + log_p2 - torch.logaddexp(log_p1, after_1)
                + torch.logaddexp(-after_1, -after_2))
    orders = _orders(m, log_p.device)
    ordered = log_p[..., orders]  # (..., m!, m)
    remaining = ordered.flip(-1).logcumsumexp(-1).flip(-1)  # members from t on
    denominators = torch.logaddexp(remaining, log_rest[..., None, None])
    return (ordered - denominators).sum(-1).logsumexp(-1)


class UnorderedSet(Estimator):
    """The unordered set estimator (Kool, van Hoof & Welling, "Estimating Gradients for
    Discrete Random Variables by Sampling without Replacement", ICLR 2020), for one
    categorical or Bernoulli variable per batch element.

    A set S of k distinct values is drawn without replacement (Gumbel-top-k of the engine's
    perturbed logits: its first element is REINFORCE's sample for the same noise). With p(S)
    the probability of the set and R(S, s) = p^{D\\s}(S\\s) / p(S) (the leave-one-out ratio),
    E_S[sum_{s in S} p(s) R(S, s) h(s)] = sum_x p(x) h(x) for every h (Kool et al., Theorem 1:
    p(s) R(S, s) is the probability of s given the unordered set). With h = f grad log p and
    h = grad f: value sum_s p(s) R(S, s) f(s) and gradient sum_s R(S, s) grad p(s) f(s) + the
    same weights times grad f(s). The built-in baseline (`baseline=True`, the paper's main
    estimator and the default) subtracts B(s) = sum_{s'} p(s') R2(s, s') f(s') from f(s) in the
    score, R2(s, s') = p^{D\\{s,s'}}(S\\{s,s'}) / p^{D\\s}(S\\s), R2(s, s) = 1; it is unbiased
    and can raise the variance, so `baseline=False` is offered. With k = K it is exact.

    `num_samples` S is the number of independent sets (S x k evaluations); k <= K and
    k <= 6 (the set probabilities sum over k! orderings).

    Cost: beyond the k evaluations, the set probabilities take O(k^2) small tensor operations
    over k! orderings per estimate (Gumbel-top-k, the leave-one-out and leave-two-out ratios),
    independent of the networks; for k = 2, the default, a few operations in closed form
    (`pair_weights_and_signals`): on a digits categorical VAE with one variable of 16
    categories (batch 32, S = 2) 1.14x a hand-written step of the same formula
    (`python -m estibench.benchmarks.regression.speed.handwritten`).
    """

    name = "unordered_set"

    def __init__(self, k: int = 2, baseline: bool = True, direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)
        if not isinstance(k, int) or not 1 <= k <= MAX_SET_SIZE:
            raise EstimatorError(
                f"estimator 'unordered_set': k must be an integer in [1, {MAX_SET_SIZE}] "
                f"(its set probabilities sum over k! orderings), got {k!r}"
            )
        if not isinstance(baseline, bool):
            raise EstimatorError(
                f"estimator 'unordered_set': baseline must be true or false, got {baseline!r}")
        self.k = k
        self.baseline = baseline

    @property
    def supports(self) -> str:  # type: ignore[override]
        return (f"one Categorical, OneHotCategorical or Bernoulli variable per batch element "
                f"(an Independent of one variable included) with at least k = {self.k} values")

    def applies_to(self, q: Distribution) -> bool:
        if type(distributions.base_of(q)) not in DISCRETE:
            return False
        _, variables, values = _layout(q)
        return variables == 1 and values >= self.k

    def check(self, q: Distribution) -> None:
        if self.applies_to(q):
            return
        if type(distributions.base_of(q)) in DISCRETE:  # say why: the layout
            _, variables, values = _layout(q)
            raise UnsupportedDistributionError(
                self.name, f"{distributions.describe(q)} with {variables} variables of {values} "
                "values", self.supports)
        super().check(q)

    def extra_repr(self) -> str:
        return f"k={self.k}, baseline={self.baseline}, direct_term={self.direct_term}"

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        u = draw_noise(q, num_samples) if noise is None else noise
        log_p = log_probs(q)[..., 0, :]  # (*B, K)
        if isinstance(distributions.base_of(q), Bernoulli):
            # Gumbel-top-k of the two values from one logistic variate: keys (0, phi + L).
            logits = distributions.base_of(q).logits.detach()
            keys = torch.stack([torch.zeros_like(u), logits + logistic(u)], -1)
            keys = keys.reshape(num_samples, *log_p.shape)
        else:
            keys = log_p.detach() - neg_gumbel(u.reshape(num_samples, *log_p.shape))
        members = keys.topk(self.k, -1).indices  # (S, *B, k): ordered draw without replacement
        k = self.k
        # (k S, *B, *event), member-major; flattened after the values are made (no copy)
        points = to_values(q, members.movedim(-1, 0).unsqueeze(-1)).flatten(0, 1)
        fz = self.evaluate_many(f, points, q).unflatten(0, (k, num_samples)).movedim(0, -1)
        log_pk = log_p.expand(num_samples, *log_p.shape).gather(-1, members)  # (S, *B, k)
        held = log_pk.detach()
        if k == 2:  # the default: in closed form (tested against the general path)
            weights, learning = self.pair_weights_and_signals(held, fz.detach())
        else:
            log_rest = self._rest(log_p.detach(), members)
            weights, learning = self.weights_and_signals(held, log_rest, fz.detach())
        # sum_s w_s [f_s + l_s (log p_s - sg)]: its value is the estimate (the score term is 0)
        loss = (weights * (fz + learning * (log_pk - held))).sum(-1).mean(0)
        return EstimatorOutput(loss, loss.detach(), points.detach())

    def weights_and_signals(self, log_pk: Tensor, log_rest: Tensor, fz: Tensor
                            ) -> tuple[Tensor, Tensor]:
        """(p(s) R(S, s), the learning signal f(s) [- B(s)]) for each member, (S, *B, k)."""
        without = torch.stack([self._without(log_pk, log_rest, i) for i in range(self.k)], -1)
        weights = (log_pk + without - set_log_prob(log_pk, log_rest).unsqueeze(-1)).exp()
        if not self.baseline:
            return weights, fz
        return weights, fz - self.baselines(log_pk, log_rest, without, fz)

    def pair_weights_and_signals(self, log_pk: Tensor, fz: Tensor) -> tuple[Tensor, Tensor]:
        """`weights_and_signals` for k = 2 in closed form. With r_s = 1 - p_s, p({a, b}) =
        p_a p_b (1 / r_a + 1 / r_b), so the weight of a is (1 / r_a) / (1 / r_a + 1 / r_b) =
        r_b / (r_a + r_b); B(a) = p_a f_a + p_b R2(a, b) f_b with R2(a, b) = 1 / p^{D minus
        a}(b) = r_a / p_b, so f_a - B(a) = r_a (f_a - f_b). (r = -expm1(log p) is exact to
        an ulp of log p: where p_a -> 1, r_a's error is absolute, and so is the error of the
        weight r_a / (r_a + r_b) and of the signal it multiplies.)"""
        r = -torch.expm1(log_pk)  # r_a, r_b
        weights = r.flip(-1) / r.sum(-1, keepdim=True)
        if not self.baseline:
            return weights, fz
        return weights, r * (fz - fz.flip(-1))

    @staticmethod
    def _rest(log_p: Tensor, members: Tensor) -> Tensor:
        """log sum_{x not in S} p(x), shape (S, *B): the part of every denominator of the
        set probabilities that is not a member (the excluded members are members of S)."""
        outside = torch.ones(members.shape[:-1] + log_p.shape[-1:], dtype=torch.bool,
                             device=members.device).scatter(-1, members, False)
        return log_p.expand(outside.shape).masked_fill(~outside, -math.inf).logsumexp(-1)

    def _without(self, log_pk: Tensor, log_rest: Tensor, *removed: int) -> Tensor:
        """log p^{D minus removed}(S minus removed): the rest of the set, drawn with the
        removed members excluded."""
        keep = [j for j in range(self.k) if j not in removed]
        return set_log_prob(log_pk[..., keep], log_rest)

    def baselines(self, log_pk: Tensor, log_rest: Tensor, without: Tensor, fz: Tensor
                  ) -> Tensor:
        """B(s_i) = sum_j p(s_j) R2(s_i, s_j) f(s_j) for each member, (S, *B, k); `without`
        holds log p^{D minus s_i}(S minus s_i)."""
        out = []
        for i in range(self.k):
            log_r2 = torch.stack([
                torch.zeros_like(log_rest) if j == i
                else self._without(log_pk, log_rest, i, j) - without[..., i]
                for j in range(self.k)
            ], -1)
            out.append(((log_pk + log_r2).exp() * fz).sum(-1))
        return torch.stack(out, -1)


__all__ = ["IndeCateR", "UnorderedSet", "set_log_prob"]
