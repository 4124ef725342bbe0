"""KL(q || p) estimated at the estimator's samples, for the objectives' sampled KLs. (The closed
form, kl="analytic", is `estibench.estimators.kl_divergence`: broadcasting and vmap-safe.)

Monte Carlo estimators (`sampled_kl`), at z ~ q with log r = log p(z) - log q(z) (the three of
RL post-training; Schulman 2020, "Approximating KL divergence", joschu.net/blog/kl-approx.html):

    k1 = -log r              unbiased, E_q[k1] = KL (kl="sampled" is k1);
    k2 = (log r)^2 / 2       biased, E_q[k2] = KL + O(E_q[(log r)^3]);
    k3 = (r - 1) - log r     unbiased (E_q[r] = 1), and >= 0 sample by sample.

Each sits inside f (f = log p(x|z) - k(z)), so the estimator differentiates it as it does f, as
RL code differentiates a KL loss at its samples: pathwise through z where it reparameterises; where
it does not, k enters through its value (the score term), with log q(z) as `estimator.log_q` gives
it (q's parameters held fixed at z unless the estimator keeps the direct term). The gradient of
E_q[k] is E_q[grad k(z) + k(z) grad log q(z)] with z fixed in the first term, so leaving that
term out gives the KL's gradient only where its expectation is zero. For q's parameters phi,
grad_phi k(z) = -k'(log r) grad log q(z) is a multiple of the score:

    k1: grad log q,            mean 0: k1 is unbiased either way;
    k2: -log r grad log q,     mean grad KL: from the value alone, grad E_q[k2] - grad KL;
    k3: (1 - r) grad log q,    mean -sum_z p(z) grad log q(z) = grad KL(p || q): from the value
                               alone, grad KL(q || p) - grad KL(p || q).

kl="k3_unbiased" adds that score-function correction: k3 reads log q(z) from q's live parameters,
so its gradient is that of E_q[k3] = KL, unbiased with any unbiased estimator (an estimator that
keeps the direct term, as pathwise does by default, already gives k3 this gradient). k2 has no
such version: E_q[k2] is not the KL, so the gradient of its expectation is not the KL's.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from estibench.estimators import Estimator, distributions

SAMPLED_KL = ("k2", "k3", "k3_unbiased")  # the estimators `sampled_kl` computes


def sampled_kl(kind: str, estimator: Estimator, q: Distribution, z: Tensor,
               log_prior: Tensor) -> Tensor:
    """The estimate k(z) of KL(q || p) of `kind` ("k2", "k3" or "k3_unbiased", module
    docstring) at the samples z (S, *B, *event), shape (S, *B); log_prior: log p(z) as the
    estimator sees it. k1 is the objectives' kl="sampled" f itself."""
    if kind == "k3_unbiased":  # q's live parameters: the correction term is kept
        live = q if type(estimator).relax is Estimator.relax else estimator.relax(q)
        log_q = distributions.log_prob(live, z)
    else:
        log_q = estimator.log_q(q, z)
    log_ratio = log_prior - log_q
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind in ("k3", "k3_unbiased"):
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"kind must be one of {', '.join(SAMPLED_KL)}, got {kind!r}")
