"""Antithetic estimators for Bernoulli latents: ARM and DisARM (alias U2G).

One uniform u per latent coordinate gives a coupled pair of samples. The engine's Bernoulli
sample is b = 1[phi + logistic(u) > 0] = 1[u > sigma(-phi)], so with the antithetic noise 1 - u

    b1 = 1[u > sigma(-phi)]       (exactly REINFORCE's sample for the same noise),
    b2 = 1[1 - u > sigma(-phi)] = 1[u < sigma(phi)],

both marginally Bernoulli(sigma(phi)). f is evaluated at the pair in one call (2 evaluations
per pair; `num_samples` S is the number of pairs, averaged). The surrogate is
(f(b1) + f(b2)) / 2 (its gradient carries f's own parameter dependence, unbiased since each of
b1, b2 is a sample of q) plus sum_d sg(g_d) (phi_d - sg(phi_d)), whose gradient with respect to
the logits phi is the pair's estimate g. Categorical latents: not implemented (the coupled
stick-breaking DisARM of Dong et al. 2021 is not here), refused as not applicable.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution

from . import distributions
from .base import Estimator, EstimatorOutput, Integrand
from .noise import draw_noise, hard_sample


def sum_variables(x: Tensor, variables: int) -> Tensor:
    """x summed over its last `variables` dimensions (none: x itself)."""
    return x.flatten(-variables).sum(-1) if variables else x


class _AntitheticPair(Estimator):
    """Shared mechanics of ARM and DisARM: the pair, f at both, the logit surrogate."""

    supports = ("Bernoulli (optionally inside Independent); categorical latents are not "
                "supported (no coupled stick-breaking variant here)")

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


class DisARM(_AntitheticPair):
    """DisARM (Dong, Mnih & Tucker, NeurIPS 2020, arXiv:2006.10680); also U2G (Yin et al.
    2020), registered as the alias `u2g`.

    g_phi = 1/2 (f(b1) - f(b2)) (b1 - b2) sigma(|phi|) = E[ARM | b1, b2]. Given the pair, the
    u_d are independent: where b1_d = b2_d, u_d is uniform between sigma(-phi_d) and sigma(phi_d),
    symmetric about 1/2, so E[u_d - 1/2] = 0; where b1_d != b2_d, u_d is uniform on an end
    interval of length sigma(-|phi_d|), so E[u_d - 1/2] = (b1_d - b2_d) sigma(|phi_d|) / 2. So it
    is unbiased and, by Rao-Blackwell, Var(DisARM) <= Var(ARM) at the same two evaluations.
    """

    name = "disarm"

    def pair_weight(self, u, b1, b2, logits):  # type: ignore[override]
        return 0.5 * (b1 - b2) * torch.sigmoid(logits.abs())


__all__ = ["ARM", "DisARM"]
