"""Antithetic estimators: ARM, DisARM (alias U2G) and CARMS.

One uniform u per latent coordinate gives a coupled pair of samples. The engine's Bernoulli
sample is b = 1[phi + logistic(u) > 0] = 1[u > sigma(-phi)], so with the antithetic noise 1 - u

    b1 = 1[u > sigma(-phi)]       (exactly REINFORCE's sample for the same noise),
    b2 = 1[1 - u > sigma(-phi)] = 1[u < sigma(phi)],

both marginally Bernoulli(sigma(phi)). f is evaluated at the pair in one call (2 evaluations
per pair; `num_samples` S is the number of pairs, averaged). The surrogate is
(f(b1) + f(b2)) / 2 (its gradient carries f's own parameter dependence, unbiased since each of
b1, b2 is a sample of q) plus sum_d sg(g_d) (phi_d - sg(phi_d)), whose gradient with respect to
the logits phi is the pair's estimate g.

Categorical latents: DisARM writes a categorical as a chain of K - 1 binaries (stick breaking)
and couples the two chains' binaries as above; CARMS couples S categorical samples at once
through a Dirichlet copula. ARM (its categorical form is ARSM) stays Bernoulli only.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution, OneHotCategorical

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand
from .errors import EstimatorError
from .noise import draw_noise, hard_sample, noise_dtype
from .partial_enumeration import log_probs, sample_index, to_values

CATEGORICAL = (Categorical, OneHotCategorical)


def sum_variables(x: Tensor, variables: int) -> Tensor:
    """x summed over its last `variables` dimensions (none: x itself)."""
    return x.flatten(-variables).sum(-1) if variables else x


def first_uniforms(q: Distribution, u: Tensor) -> Tensor:
    """One uniform per sample and variable, (S, *B, D): u itself for a Bernoulli q, the first
    of the K uniforms a categorical variable gets for a categorical q."""
    if isinstance(distributions.base_of(q), CATEGORICAL):
        u = u[..., 0]
    return u.reshape(u.shape[0], *q.batch_shape, -1)


class _AntitheticPair(Estimator):
    """Shared mechanics of ARM and DisARM on Bernoulli latents: the pair, f at both, the logit
    surrogate."""

    supports = ("Bernoulli (optionally inside Independent); categorical latents are not "
                "supported (their ARM, ARSM, is not implemented here)")

    def __init__(self, direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)

    def applies_to(self, q: Distribution) -> bool:
        return type(distributions.base_of(q)) is Bernoulli

    def pair_weight(self, u: Tensor, b1: Tensor, b2: Tensor, logits: Tensor) -> Tensor:
        """The factor multiplying f(b1) - f(b2) in the estimate of d/dphi, per coordinate."""
        raise NotImplementedError

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        u = draw_noise(q, num_samples) if noise is None else noise
        # Both halves of the pair from one threshold, stacked as f takes them (one call).
        pair = hard_sample(q, torch.cat([u, 1 - u]))
        halves = [num_samples, num_samples]  # split_with_sizes: `split` is a Python wrapper
        f1, f2 = self.evaluate_many(f, pair, q).split_with_sizes(halves)
        b1, b2 = pair.split_with_sizes(halves)
        logits = distributions.base_of(q).logits
        # f values are (S, *B); the logits carry the variables of an Independent after B.
        variables = logits.dim() - len(q.batch_shape)
        diff = (f1 - f2).detach().reshape(*f1.shape, *[1] * variables)
        weight = self.pair_weight(u, b1, b2, logits.detach())
        grad = (diff * weight).mean(0)
        score = sum_variables(grad * (logits - logits.detach()), variables)
        value = 0.5 * (f1 + f2).mean(0)
        return EstimatorOutput(value + score, value.detach(), pair)


class ARM(_AntitheticPair):
    """ARM: augment-REINFORCE-merge (Yin & Zhou, ICLR 2019, arXiv:1807.11143).

    g_phi = (f(b1) - f(b2)) (u - 1/2). Derivation: E_u[f(1[u < sigma]) (1 - 2u)] =
    f(1) int_0^sigma (1 - 2u) du + f(0) int_sigma^1 (1 - 2u) du = sigma (1 - sigma)(f(1) - f(0)),
    the gradient (AR, per coordinate given the others). That sample is b2; b1 is the same with
    u -> 1 - u, so E[f(b1)(2u - 1)] is the gradient too, and ARM is the average of the two.
    """

    name = "arm"

    def pair_weight(self, u, b1, b2, logits):  # type: ignore[override]
        return u - 0.5


def stick_breaking_logits(log_p: Tensor) -> Tensor:
    """The K - 1 stick-breaking logits psi_i = log p_i - log sum_{j > i} p_j of normalized
    log-probabilities (..., K): sigma(psi_i) = p_i / sum_{j >= i} p_j = P(z = i | z >= i)."""
    tail = log_p.flip(-1).logcumsumexp(-1).flip(-1)  # log sum_{j >= i} p_j
    return log_p[..., :-1] - tail[..., 1:]


class DisARM(_AntitheticPair):
    """DisARM (Dong, Mnih & Tucker, NeurIPS 2020, arXiv:2006.10680); also U2G (Yin et al.
    2020), registered as the alias `u2g`. Categorical latents: the coupled stick-breaking
    DisARM of Dong, Mnih & Tucker, "Coupled Gradient Estimators for Discrete Latent Variables",
    NeurIPS 2021, arXiv:2106.08056.

    Bernoulli: g_phi = 1/2 (f(b1) - f(b2)) (b1 - b2) sigma(|phi|) = E[ARM | b1, b2]. Given the
    pair, the u_d are independent: where b1_d = b2_d, u_d is uniform between sigma(-phi_d) and
    sigma(phi_d), symmetric about 1/2, so E[u_d - 1/2] = 0; where b1_d != b2_d, u_d is uniform
    on an end interval of length sigma(-|phi_d|), so E[u_d - 1/2] = (b1_d - b2_d)
    sigma(|phi_d|) / 2. So it is unbiased and, by Rao-Blackwell, Var(DisARM) <= Var(ARM) at
    the same two evaluations.

    Categorical (per variable of K categories): z is the first i with b_i = 1 (K - 1 if none),
    b_i ~ Bernoulli(sigma(psi_i)), psi = `stick_breaking_logits` (the categories in their given
    order); the two chains take b_i from u_i and 1 - u_i, u_i the variable's i-th uniform.
    Identity, per binary i given the other uniforms: where both chains reach it (z >= i) the
    Bernoulli one holds; where only chain k does, the other f is a baseline and
    1/2 (f_k - f_other)(b_k,i - sigma(psi_i)) has mean half chain k's derivative, the other's
    being 0; where neither does, both are 0. So d/dpsi is estimated without bias, and the
    surrogate carries it to the logits through psi. K = 2 is the Bernoulli estimate at
    phi = theta_0 - theta_1 (b = 1: category 0).
    """

    name = "disarm"
    supports = ("Bernoulli, Categorical and OneHotCategorical variables (the categorical ones "
                "by coupled stick breaking), optionally independent inside Independent")

    def applies_to(self, q: Distribution) -> bool:
        return type(distributions.base_of(q)) in (Bernoulli, *CATEGORICAL)

    def pair_weight(self, u, b1, b2, logits):  # type: ignore[override]
        return 0.5 * (b1 - b2) * torch.sigmoid(logits.abs())

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        if not isinstance(distributions.base_of(q), CATEGORICAL):
            return super().estimate(q, f, num_samples, noise)
        u = draw_noise(q, num_samples) if noise is None else noise
        psi = stick_breaking_logits(log_probs(q))  # (*B, D, K - 1)
        held = psi.detach()
        u = u[..., : psi.shape[-1]].reshape(num_samples, *psi.shape)
        # The Bernoulli pair's thresholds, computed as `hard_sample` computes them.
        threshold = torch.sigmoid(-held.to(u.dtype))
        b1, b2 = ((v > threshold).to(psi.dtype) for v in (u, 1 - u))
        # z = the number of leading zeros; reaches[i] = 1[z >= i] (every binary before i is 0).
        zeros1, zeros2 = ((1 - b).cumprod(-1) for b in (b1, b2))
        z1, z2 = (zeros.sum(-1).long() for zeros in (zeros1, zeros2))
        reaches1, reaches2 = (torch.cat([torch.ones_like(zeros[..., :1]), zeros[..., :-1]], -1)
                              for zeros in (zeros1, zeros2))
        pair = [to_values(q, z1), to_values(q, z2)]
        f1, f2 = self.evaluate_sets(f, pair, q)
        diff = (f1 - f2).detach().reshape(*f1.shape, 1, 1)  # (S, *B) against (S, *B, D, K-1)
        sigma = torch.sigmoid(held)
        both = reaches1 * reaches2
        grad = 0.5 * diff * (both * (b1 - b2) * torch.sigmoid(held.abs())
                             + reaches1 * (1 - reaches2) * (b1 - sigma)
                             - reaches2 * (1 - reaches1) * (b2 - sigma))
        score = (grad.mean(0) * (psi - held)).sum((-2, -1))
        value = 0.5 * (f1 + f2).mean(0)
        return EstimatorOutput(value + score, value.detach(), torch.cat(pair))


Ratio = Literal["exact", "clipped"]
Coupling = Literal["dirichlet", "independent"]
RATIOS = ("exact", "clipped")
COUPLINGS = ("dirichlet", "independent")
CLIP_SMOOTHING, CLIP_RANGE = 1e-3, (0.01, 10.0)  # the CARMS reference code's clipped ratio


def end_pair_orders(k: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """The category orders CARMS draws from, one per unordered pair {a, b} of categories: a
    first, the others ascending, b last ((M, K), M = K (K - 1) / 2; one order for K = 1), and
    each order's rank of each category ((M, K): the position of category k)."""
    pairs = list(itertools.combinations(range(k), 2)) or [(0, 0)]
    orders = [[a, *(c for c in range(k) if c not in (a, b)), b][:k] for a, b in pairs]
    order = torch.tensor(orders, device=device)
    return order, order.argsort(-1)


class CARMS(Estimator):
    """CARMS (Dimitriev & Zhou, "CARMS: Categorical-Antithetic-REINFORCE Multi-Sample Gradient
    Estimator", NeurIPS 2021, arXiv:2110.14002): S >= 2 jointly antithetic samples of each
    categorical variable, and the leave-one-out estimate reweighted by their pair ratio.

    Estimate, per variable with probabilities pi: g_theta = (1/S) sum_i (e_{z_i} - pi)
    (1/(S-1)) sum_{j != i} r(z_i, z_j) (f(z_i) - f(z_j)), r(a, b) = pi_a pi_b / P(a, b), with
    P the joint pmf of any two of the S samples. Identity: each sample is marginally pi, the
    other variables are independent of this one's, so with h(a) = E[f | z_d = a] a pair
    contributes sum_{a,b} P(a,b) r(a,b) (e_a - pi)(h(a) - h(b)) = sum_{a,b} pi_a pi_b
    (e_a - pi)(h(a) - h(b)) = J(pi) h, the gradient, where P(a, b) > 0 for every a != b (the
    a = b terms have mean 0 whatever r is). With r = 1 and independent samples it is RLOO.

    The coupling (`coupling="dirichlet"`): u_i = (1 - d_i)^(S-1) with d ~ Dirichlet(1, ..., 1),
    uniform each, with the pair copula C(p, q) = (p^(1/(S-1)) + q^(1/(S-1)) - 1)_+^(S-1) (for
    S = 2, u and 1 - u); d are the spacings of S - 1 of the variable's uniforms, the last
    sample's uniform picks one category order, shared by the S samples, uniformly among
    `end_pair_orders` (each pair of categories at the two ends, so P(a, b) > 0), and u_i maps
    to a category by the inverse CDF in that order. P is the exact mixture over the orders of
    the inclusion-exclusion of C at the categories' interval ends. A Bernoulli is the case of
    two categories (b = 1: category 1, one order); with S = 2 CARMS is then DisARM.
    `coupling="independent"` draws the samples as REINFORCE does, with r = 1: RLOO.

    `ratio="clipped"` is the reference code's ratio, clip((pi_a pi_b + 1e-3) / (P(a, b) +
    1e-3), 0.01, 10): biased (most where probabilities are small), offered for comparison
    (of independent samples the clipped ratio is 1 too).
    Cost: S evaluations of f, and O(S^2 M) for the pair pmf with M = K (K - 1) / 2 orders.
    """

    name = "carms"
    supports = ("Categorical, OneHotCategorical and Bernoulli variables, optionally "
                "independent inside Independent")

    def __init__(self, ratio: Ratio = "exact", coupling: Coupling = "dirichlet",
                 direct_term: bool = False) -> None:
        super().__init__(direct_term=direct_term)
        if ratio not in RATIOS:
            raise EstimatorError(f"estimator 'carms': ratio must be one of "
                                 f"{', '.join(RATIOS)}, got {ratio!r}")
        if coupling not in COUPLINGS:
            raise EstimatorError(f"estimator 'carms': coupling must be one of "
                                 f"{', '.join(COUPLINGS)}, got {coupling!r}")
        self.ratio = ratio
        self.coupling = coupling
        self.unbiased = ratio == "exact" or coupling == "independent"

    def extra_repr(self) -> str:
        return (f"ratio={self.ratio!r}, coupling={self.coupling!r}, "
                f"direct_term={self.direct_term}")

    def applies_to(self, q: Distribution) -> bool:
        return type(distributions.base_of(q)) in (Bernoulli, *CATEGORICAL)

    def estimate(
        self, q: Distribution, f: Integrand, num_samples: int, noise: Tensor | None
    ) -> EstimatorOutput:
        if num_samples < 2:
            raise EstimatorError(f"estimator 'carms' needs num_samples >= 2 (it weighs pairs "
                                 f"of samples), got {num_samples}")
        u = draw_noise(q, num_samples) if noise is None else noise
        log_p = log_probs(q)  # (*B, D, K), with the gradient to q's parameters
        if self.coupling == "independent":
            index, ratio = sample_index(q, u), None
        else:
            index, ratio = self.coupled(log_p.detach(), first_uniforms(q, u))
        z = to_values(q, index)
        fz = self.evaluate(f, z, num_samples, q)
        held = fz.detach()
        diff = (held[:, None] - held[None]).unsqueeze(-1)  # f_i - f_j, (S, S, *B, 1)
        weighted = diff if ratio is None else diff * ratio.to(diff.dtype)
        signal = weighted.sum(1) / (num_samples - 1)  # (S, *B, D); i = j adds 0
        log_q = log_p.expand(num_samples, *log_p.shape).gather(-1, index.unsqueeze(-1))
        log_q = log_q.squeeze(-1)
        score = (signal * (log_q - log_q.detach())).sum(-1).mean(0)
        return EstimatorOutput(fz.mean(0) + score, held.mean(0), z)

    def coupled(self, log_p: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The S coupled category indices (S, *B, D) from one uniform per sample and variable
        v (S, *B, D), and the ratio r(z_i, z_j) (S, S, *B, D) (0 where P = 0: never drawn)."""
        n = v.shape[0]
        work = noise_dtype(log_p.dtype)
        p = log_p.to(work).exp()  # (*B, D, K)
        order, rank = self.constant(("orders", p.shape[-1], p.device),
                                    lambda: end_pair_orders(p.shape[-1], p.device))
        # Per order (M) and position: the probabilities in that order, the sums before
        # (head) and after (tail) each interval, so small ones keep their relative precision.
        in_order = p[..., order]  # (*B, D, M, K)
        head_hi = in_order.cumsum(-1)
        tail_lo = in_order.flip(-1).cumsum(-1).flip(-1)
        nothing = torch.zeros_like(in_order[..., :1])
        head_lo = torch.cat([nothing, head_hi[..., :-1]], -1)
        tail_hi = torch.cat([tail_lo[..., 1:], nothing], -1)
        # The copula's uniforms: the spacings d of S - 1 sorted uniforms, 1 - d_i computed as
        # s_{i-1} + (1 - s_i), in reverse (for S = 2: v_0 and 1 - v_0).
        s = v[: n - 1].to(work).sort(0).values
        edge = torch.zeros_like(s[:1])
        uniforms = (torch.cat([edge, s]) + torch.cat([1 - s, edge])).flip(0) ** (n - 1)
        # One order per variable, from the last sample's uniform; the inverse CDF in it.
        pick = (v[n - 1] * order.shape[0]).long().clamp(max=order.shape[0] - 1)  # (*B, D)
        bounds = head_hi.gather(-2, pick[..., None, None].expand(*pick.shape, 1,
                                                                  order.shape[1])).squeeze(-2)
        position = (uniforms.unsqueeze(-1) >= bounds).sum(-1).clamp(max=order.shape[1] - 1)
        index = order[pick].expand(n, *pick.shape, -1).gather(-1, position.unsqueeze(-1))
        index = index.squeeze(-1)
        # C(p, q) = (x(p) - y(q))_+^(S-1), x(p) = p^a from heads, y(q) = 1 - q^a from tails
        # (sums of probabilities that sum to 1 up to rounding: clamped to [0, 1]).
        a = 1.0 / (n - 1)
        by_category = rank.expand(*in_order.shape)
        x_lo, x_hi = (h.gather(-1, by_category).clamp(max=1) ** a for h in (head_lo, head_hi))
        y_lo, y_hi = (-torch.expm1(a * torch.log1p(-t.gather(-1, by_category).clamp(max=1)))
                      for t in (tail_lo, tail_hi))

        def at(t: Tensor) -> Tensor:  # (*B, D, M, K) at the samples' categories: (S, *B, D, M)
            picked = t.expand(n, *t.shape).gather(-1, index[..., None, None].expand(
                *index.shape, t.shape[-2], 1))
            return picked.squeeze(-1)

        x_lo, x_hi, y_lo, y_hi = at(x_lo), at(x_hi), at(y_lo), at(y_hi)

        def cdf(x: Tensor, y: Tensor) -> Tensor:  # C over pairs (i, j): (S, S, *B, D, M)
            return (x[:, None] - y[None]).clamp(min=0) ** (n - 1)

        joint = (cdf(x_hi, y_hi) - cdf(x_lo, y_hi) - cdf(x_hi, y_lo) + cdf(x_lo, y_lo))
        joint = joint.mean(-1).clamp(min=0)  # the mixture over the orders
        p_z = p.expand(n, *p.shape).gather(-1, index.unsqueeze(-1)).squeeze(-1)
        product = p_z[:, None] * p_z[None]
        if self.ratio == "clipped":
            ratio = ((product + CLIP_SMOOTHING) / (joint + CLIP_SMOOTHING)).clamp(*CLIP_RANGE)
        else:
            ratio = torch.where(joint > 0, product / joint.clamp(min=torch.finfo(work).tiny),
                                torch.zeros_like(joint))
        return index, ratio


__all__ = ["ARM", "CARMS", "DisARM"]
