"""VIMCO: exact against the IWAE-K bound by enumerating the K-tuples of samples.

T4 (estimators-zoo.md section 2): one Bernoulli latent, p(x, b=1) = 0.3, p(x, b=0) = 0.1,
q = Bernoulli(sigmoid(phi)), log-weights l(b) = log p(x, b) - log q(b). The VIMCO estimate is a
function of the tuple (b_1..b_K), so its exact mean and variance come from the 2^K tuples, each
forced through the engine's noise map; the bound and its gradient from autograd through the
enumerated bound. On the small VAEs the same enumeration (configurations^K tuples) gives the
exact IWAE-K gradient for a calibrated unbiasedness test.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators.exact import enumerate_support
from tests.estimator_oracles import bernoulli_noise, check_variance, estimates_needed, moments
from tests.helpers import (
    Summary,
    assert_unbiased_with_power,
    binary_batch,
    gradient_estimates,
    role_parameters,
    small_bernoulli_vae,
    small_categorical_vae,
)

LOG_JOINT = torch.tensor([math.log(0.1), math.log(0.3)], dtype=torch.float64)


def t4_log_weights(estimator, q):
    return lambda b: LOG_JOINT[b.long()] - estimator.log_q(q, b)


def tuples(k: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)), dtype=torch.float64)


def exact_bound(phi: float, k: int) -> tuple[float, float]:
    """The IWAE-K bound and its derivative in phi, by enumeration and autograd."""
    leaf = torch.tensor(phi, dtype=torch.float64, requires_grad=True)
    q = Bernoulli(logits=leaf)
    b = tuples(k)  # (2^K, K)
    log_w = LOG_JOINT[b.long()] - q.log_prob(b)
    bound = (q.log_prob(b).sum(1).exp() * (log_w.logsumexp(1) - math.log(k))).sum()
    (grad,) = torch.autograd.grad(bound, [leaf])
    return float(bound.detach()), float(grad)


def by_formula(phi: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(VIMCO, naive score function) estimates per tuple, from the paper's formulas:
    VIMCO sum_j (L - L_{-j}) (b_j - s) + sum_j w_j dl_j, naive L sum_j (b_j - s) + the same
    last term, with dl_j/dphi = -(b_j - s) (h_j fixed) and w = softmax(l)."""
    s = 1 / (1 + math.exp(-phi))
    vimco, naive = [], []
    for b in tuples(k).tolist():
        log_q = [math.log(s if bj else 1 - s) for bj in b]
        l = [math.log(0.3 if bj else 0.1) - lq for bj, lq in zip(b, log_q, strict=True)]
        big = max(l)
        bound = big + math.log(sum(math.exp(v - big) for v in l) / k)
        w = [math.exp(v - big) for v in l]
        w = [v / sum(w) for v in w]
        direct = sum(wj * -(bj - s) for wj, bj in zip(w, b, strict=True))
        signal = 0.0
        for j in range(k):
            swapped = list(l)
            swapped[j] = (sum(l) - l[j]) / (k - 1)
            loo = math.log(sum(math.exp(v) for v in swapped) / k)
            signal += (bound - loo) * (b[j] - s)
        vimco.append(signal + direct)
        naive.append(bound * sum(bj - s for bj in b) + direct)
    return torch.tensor(vimco, dtype=torch.float64), torch.tensor(naive, dtype=torch.float64)


def estimator_per_tuple(phi: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """VIMCO's (gradient, value) for each of the 2^K tuples, forced through its noise."""
    b = tuples(k).T  # (K, 2^K): sample j of tuple t
    leaf = torch.full((b.shape[1],), phi, dtype=torch.float64, requires_grad=True)
    estimator = estimators.get("vimco")
    q = Bernoulli(logits=leaf)
    out = estimator(q, t4_log_weights(estimator, q), k,
                    noise=bernoulli_noise(leaf.detach(), b))
    assert torch.equal(out.samples, b) and out.evaluations == k
    (grad,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return grad, out.value


@pytest.mark.parametrize("phi", [0.0, 0.8])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_vimco_is_exact_in_mean_and_below_the_naive_variance(phi: float, k: int) -> None:
    bound, gradient = exact_bound(phi, k)
    vimco, naive = by_formula(phi, k)
    grads, values = estimator_per_tuple(phi, k)
    assert torch.allclose(grads, vimco, rtol=1e-10, atol=1e-12)
    s = 1 / (1 + math.exp(-phi))
    prob = torch.tensor([math.prod(s if x else 1 - s for x in t) for t in tuples(k).tolist()],
                        dtype=torch.float64)
    mean, variance, _ = moments(grads[:, None], prob)
    assert float(mean) == pytest.approx(gradient, rel=1e-10, abs=1e-13)
    assert float((prob * values).sum()) == pytest.approx(bound, rel=1e-12)
    naive_mean, naive_variance, _ = moments(naive[:, None], prob)
    assert float(naive_mean) == pytest.approx(gradient, rel=1e-10, abs=1e-13)
    assert float(variance) < 0.5 * float(naive_variance), (variance, naive_variance)


@pytest.mark.parametrize("k", [2, 5])
def test_random_vimco_estimates_match_the_enumerated_moments(k: int) -> None:
    phi = 0.8
    _, gradient = exact_bound(phi, k)
    vimco, _ = by_formula(phi, k)
    s = 1 / (1 + math.exp(-phi))
    prob = torch.tensor([math.prod(s if x else 1 - s for x in t) for t in tuples(k).tolist()],
                        dtype=torch.float64)
    _, variance, fourth = moments(vimco[:, None], prob)
    # Enough estimates for the 2% variance check and for power against a 25% bias (z > 6).
    power = math.ceil(float(variance) * (6 / (0.25 * gradient)) ** 2)
    m = max(estimates_needed(float(variance), float(fourth), 0.02), power)
    assert m <= 400_000
    torch.manual_seed(50)
    leaf = torch.full((m,), phi, dtype=torch.float64, requires_grad=True)
    estimator = estimators.get("vimco")
    q = Bernoulli(logits=leaf)
    out = estimator(q, t4_log_weights(estimator, q), k)
    (grads,) = torch.autograd.grad(out.loss.sum(), [leaf])
    assert_unbiased_with_power(Summary.of(grads[:, None]), torch.tensor([gradient]),
                               f"vimco K={k}")
    check_variance(grads, float(variance), float(fourth), 0.02, f"vimco K={k}")


def test_vimco_refuses_fewer_than_two_samples() -> None:
    q = Bernoulli(logits=torch.zeros(3))
    with pytest.raises(estimators.EstimatorError, match=r"num_samples \(K\) >= 2.*got 1"):
        estimators.get("vimco")(q, lambda z: z, 1)


# The VAEs ---------------------------------------------------------------------------------

def exact_iwae(objective, x: torch.Tensor, k: int) -> torch.Tensor:
    """The IWAE-K bound summed over the batch, by enumerating configurations^K tuples."""
    q = objective.posterior(x)
    support = enumerate_support(q)  # (C, B, *event)
    index = torch.tensor(list(itertools.product(range(support.shape[0]), repeat=k)))
    z = support[index.reshape(-1)]  # (T K, B, *event)
    log_q = q.log_prob(z)
    log_w = objective.log_likelihood(x, z) + objective.prior(x).log_prob(z) - log_q
    log_w, log_q = log_w.unflatten(0, index.shape), log_q.unflatten(0, index.shape)
    return (log_q.sum(1).exp() * (log_w.logsumexp(1) - math.log(k))).sum()


@pytest.mark.parametrize("model", ["categorical_vae", "bernoulli_vae"])
def test_vimco_is_unbiased_for_the_iwae_bound_of_the_vaes(model: str) -> None:
    factory = small_categorical_vae if model == "categorical_vae" else small_bernoulli_vae
    objective, x, k = factory(bound="iwae"), binary_batch(3, 8), 2
    enc, dec = role_parameters(objective, "encoder"), role_parameters(objective, "decoder")
    grads = torch.autograd.grad(exact_iwae(objective, x, k), [*enc, *dec])
    exact = {"encoder": torch.cat([g.reshape(-1) for g in grads[:len(enc)]]),
             "decoder": torch.cat([g.reshape(-1) for g in grads[len(enc):]])}
    torch.manual_seed(51)
    estimates = gradient_estimates(objective, x, estimators.get("vimco"), k, 200, 60)
    for role in ("encoder", "decoder"):
        assert_unbiased_with_power(Summary.of(getattr(estimates, role)), exact[role],
                                   f"vimco {model} {role}")


def test_vimco_needs_the_iwae_bound() -> None:
    vimco = estimators.get("vimco")
    small = {"input_dim": 8, "hidden": 8}
    objectives.get("categorical_vae", bound="iwae", **small).check(vimco)
    with pytest.raises(estimators.EstimatorError, match="estimates the IWAE bound"):
        objectives.get("categorical_vae", **small).check(vimco)
    with pytest.raises(estimators.EstimatorError, match="needs an estimator of the IWAE"):
        objectives.get("bernoulli_vae", bound="iwae", **small).check(estimators.get("disarm"))
