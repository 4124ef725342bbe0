"""Gradient variance against closed forms, and the variance effect of the direct term.

Closed forms: single-sample REINFORCE on the Bernoulli toy (enumerating b in {0, 1}), pathwise and
score-function estimators on the Gaussian toy w.r.t. (mu, log sigma) (polynomials in the standard
normal noise eps, integrated exactly by Gauss-Hermite quadrature). The number of estimates M is
chosen from the exact fourth central moment so that 5% of the variance exceeds 4 standard errors of
the sample variance, and that is asserted too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss

from estibench import estimators
from estibench.benchmarks import objectives
from tests.helpers import (
    Summary,
    binary_batch,
    bonferroni_bound,
    gradient_estimates,
    small_categorical_vae,
    toy_gradient_estimates,
)

TOLERANCE = 0.05  # relative tolerance on a variance
MAX_ESTIMATES = 4_000_000  # runtime guard: the chosen M must stay below this


def moments(values: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """(mean, variance, fourth central moment) of a discrete distribution (values, weights)."""
    weights = weights / weights.sum()
    mean = float((weights * values).sum())
    centred = values - mean
    return mean, float((weights * centred**2).sum()), float((weights * centred**4).sum())


def variance_se(variance: float, fourth: float, m: int) -> float:
    """Exact standard error of the unbiased sample variance of m iid draws."""
    return math.sqrt(fourth / m - variance**2 * (m - 3) / (m * (m - 1)))


def estimates_needed(variance: float, fourth: float) -> int:
    """The smallest M (up to rounding) with 4 standard errors <= TOLERANCE * variance."""
    m = max(1000, math.ceil((fourth / variance**2 - 1) * (4 / TOLERANCE) ** 2) + 10)
    while 4 * variance_se(variance, fourth, m) > TOLERANCE * variance:
        m = math.ceil(m * 1.1)
    return m


def check_variance(samples: torch.Tensor, variance: float, fourth: float, label: str) -> float:
    m = samples.shape[0]
    se = variance_se(variance, fourth, m)
    assert 4 * se <= TOLERANCE * variance, f"{label}: M = {m} too small for the 5% claim"
    measured = float(samples.double().var())
    assert abs(measured - variance) <= TOLERANCE * variance, (
        f"{label}: variance {measured:.6g} vs closed form {variance:.6g} "
        f"({(measured / variance - 1):+.2%}, se {se / variance:.2%})"
    )
    return measured


# Bernoulli toy ---------------------------------------------------------------------------

def bernoulli_reinforce_distribution(logit: float, target: float) -> tuple[np.ndarray, np.ndarray]:
    """Single-sample REINFORCE of d/dphi E[-(b - t)^2]: g = f(b) (b - p), b ~ Bernoulli(p)."""
    p = 1 / (1 + math.exp(-logit))
    f = {b: -((b - target) ** 2) for b in (0, 1)}
    return np.array([f[1] * (1 - p), f[0] * (0 - p)]), np.array([p, 1 - p])


@pytest.mark.parametrize(("logit", "target"), [(0.0, 0.499), (1.5, 0.3), (-2.0, 0.7)])
def test_reinforce_variance_on_bernoulli_toy(logit: float, target: float) -> None:
    values, weights = bernoulli_reinforce_distribution(logit, target)
    mean, variance, fourth = moments(values, weights)
    # The closed form, by hand: Var = p(1-p)[(1-p) f1^2 + p f0^2] - (p(1-p)(f1 - f0))^2.
    p, f1, f0 = 1 / (1 + math.exp(-logit)), -((1 - target) ** 2), -(target**2)
    assert variance == pytest.approx(
        p * (1 - p) * ((1 - p) * f1**2 + p * f0**2) - (p * (1 - p) * (f1 - f0)) ** 2, rel=1e-12
    )
    m = estimates_needed(variance, fourth)
    assert m <= MAX_ESTIMATES
    torch.manual_seed(30)
    toy = objectives.get("bernoulli_toy", target=target, init=logit).double()
    grads, exact = toy_gradient_estimates(toy, estimators.get("reinforce"), 1, copies=m)
    assert float(exact) == pytest.approx(mean, rel=1e-9)
    check_variance(grads, variance, fourth, f"REINFORCE, Bernoulli toy, logit {logit}")


# Gaussian toy ----------------------------------------------------------------------------

NODES, WEIGHTS = hermegauss(40)  # exact for polynomials of degree <= 79 in eps ~ N(0, 1)


def gaussian_estimators(mu: float, sigma: float, target: float) -> dict[str, np.ndarray]:
    """Single-sample gradient estimates w.r.t. (mu, log sigma) at the quadrature nodes eps,
    x = mu + sigma eps, f(x) = -(x - target)^2."""
    eps = NODES
    x = mu + sigma * eps
    f = -((x - target) ** 2)
    dfdx = -2 * (x - target)
    return {
        "pathwise mu": dfdx,
        "pathwise log_sigma": dfdx * sigma * eps,
        "reinforce mu": f * eps / sigma,  # d/dmu log q = (x - mu) / sigma^2
        "reinforce log_sigma": f * (eps**2 - 1),  # d/dlog sigma log q = eps^2 - 1
    }


GAUSSIAN_CASES = [(1.0, 1.0, 0.0), (0.5, 0.8, 0.2)]


@pytest.mark.parametrize(("mu", "sigma", "target"), GAUSSIAN_CASES)
def test_gaussian_closed_forms_by_hand(mu: float, sigma: float, target: float) -> None:
    """The quadrature integrates the estimators exactly: means are the true gradient and the
    pathwise variances are 4 sigma^2 and 4 sigma^2 (a^2 + 2 sigma^2), a = mu - target."""
    a = mu - target
    table = gaussian_estimators(mu, sigma, target)
    grad = {"mu": -2 * a, "log_sigma": -2 * sigma**2}
    for name, values in table.items():
        mean, _, _ = moments(values, WEIGHTS)
        assert mean == pytest.approx(grad[name.split()[1]], rel=1e-10, abs=1e-12), name
    assert moments(table["pathwise mu"], WEIGHTS)[1] == pytest.approx(4 * sigma**2, rel=1e-10)
    assert moments(table["pathwise log_sigma"], WEIGHTS)[1] == pytest.approx(
        4 * sigma**2 * (a**2 + 2 * sigma**2), rel=1e-10
    )
    # The score-function variance w.r.t. mu, expanded by hand: E[f^2 eps^2] / sigma^2 - (2a)^2
    # with E[(a + s e)^4 e^2] = a^4 + 18 a^2 s^2 + 15 s^4 (s = sigma).
    expected = (a**4 + 18 * a**2 * sigma**2 + 15 * sigma**4) / sigma**2 - 4 * a**2
    assert moments(table["reinforce mu"], WEIGHTS)[1] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("estimator", ["pathwise", "reinforce"])
@pytest.mark.parametrize(("mu", "sigma", "target"), GAUSSIAN_CASES)
def test_variance_on_gaussian_toy(estimator: str, mu: float, sigma: float, target: float) -> None:
    table = gaussian_estimators(mu, sigma, target)
    stats = {c: moments(table[f"{estimator} {c}"], WEIGHTS) for c in ("mu", "log_sigma")}
    m = max(estimates_needed(v, f4) for _, v, f4 in stats.values())
    assert m <= MAX_ESTIMATES
    torch.manual_seed(31)
    toy = objectives.get("gaussian_toy", mean=mu, std=sigma, target=target).double()
    grads, _ = toy_gradient_estimates(toy, estimators.get(estimator), 1, copies=m)
    for column, coordinate in enumerate(("mu", "log_sigma")):
        _, variance, fourth = stats[coordinate]
        check_variance(grads[:, column], variance, fourth, f"{estimator} {coordinate}")


def test_variance_check_has_power() -> None:
    """The 5% check fails for an estimator whose variance is off by 10%: the Bernoulli toy's
    REINFORCE estimates scaled by sqrt(1.1)."""
    values, weights = bernoulli_reinforce_distribution(1.5, 0.3)
    _, variance, fourth = moments(values, weights)
    torch.manual_seed(32)
    toy = objectives.get("bernoulli_toy", target=0.3, init=1.5).double()
    m = estimates_needed(variance, fourth)
    grads, _ = toy_gradient_estimates(toy, estimators.get("reinforce"), 1, copies=m)
    with pytest.raises(AssertionError, match="closed form"):
        check_variance(grads * math.sqrt(1.1), variance, fourth, "scaled")


# The direct term -------------------------------------------------------------------------

def total_variance(estimates: torch.Tensor) -> tuple[float, float]:
    """Trace of the covariance of per-replica estimates (n, ...) and its standard error."""
    rows = estimates.double().reshape(estimates.shape[0], -1)
    squared = ((rows - rows.mean(0)) ** 2).sum(1)
    return float(squared.mean()), float(squared.std()) / math.sqrt(rows.shape[0])


def direct_term_variances(num_samples: int = 4) -> dict[bool, tuple[float, float]]:
    """Total variance of RLOO's gradient w.r.t. the logits of a small categorical VAE with a
    sampled KL, keeping (True) or dropping (False) the direct term."""
    objective, x = small_categorical_vae("sampled"), binary_batch(3, 8)
    result = {}
    for direct_term in (False, True):
        torch.manual_seed(33)
        estimator = estimators.get("reinforce", baseline="loo", direct_term=direct_term)
        estimates = gradient_estimates(objective, x, estimator, num_samples, 1000, 10)
        result[direct_term] = total_variance(estimates.params)
    return result


def test_dropping_the_direct_term_lowers_rloo_variance() -> None:
    """Both variants are unbiased under kl="sampled" (tests/estimators/test_unbiased.py); the
    direct term E_q[grad log q] = 0 only adds variance, so dropping it must lower it."""
    v = direct_term_variances()
    ratio = v[True][0] / v[False][0]
    se = ratio * math.hypot(v[True][1] / v[True][0], v[False][1] / v[False][0])
    print(f"RLOO (S=4) total variance, direct term kept / dropped: {ratio:.3f} +- {se:.3f}")
    assert ratio - 4 * se > 1.0, (ratio, se)


def test_both_direct_term_variants_agree_in_mean() -> None:
    """Same objective, same exact gradient: the two variants' means agree with each other."""
    objective, x = small_categorical_vae("sampled"), binary_batch(3, 8)
    means = []
    for direct_term in (False, True):
        torch.manual_seed(34)
        estimator = estimators.get("reinforce", baseline="loo", direct_term=direct_term)
        means.append(Summary.of(gradient_estimates(objective, x, estimator, 4, 500, 10).params))
    diff = (means[0].mean - means[1].mean) / torch.sqrt(means[0].se**2 + means[1].se**2)
    assert float(diff.abs().max()) <= bonferroni_bound(diff.numel())
