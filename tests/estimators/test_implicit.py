"""Implicit reparameterization (Figurnov et al. 2018): torch's Gamma, Beta and Dirichlet have
rsample, so `pathwise` applies to them; `reinforce` applies through q.sample(). Both sample
without the uniform noise map (none exists for these families). Exact gradients come from
closed-form moments differentiated by autograd inside the tests."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Beta, Dirichlet, Gamma

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators import EstimatorError
from tests.helpers import Summary, assert_unbiased_with_power, toy_gradient_estimates


def family(name: str, copies: int):
    """(q, its leaf parameters, the closed-form E[z] as a function of the parameters)."""
    if name == "Gamma":
        a = torch.full((copies,), 2.0, dtype=torch.float64, requires_grad=True)
        rate = torch.full((copies,), 1.5, dtype=torch.float64, requires_grad=True)
        return Gamma(a, rate), (a, rate), lambda a, r: a / r
    if name == "Beta":
        a = torch.full((copies,), 2.0, dtype=torch.float64, requires_grad=True)
        b = torch.full((copies,), 3.0, dtype=torch.float64, requires_grad=True)
        return Beta(a, b), (a, b), lambda a, b: a / (a + b)
    alpha = torch.tensor([[2.0, 1.0, 3.0]], dtype=torch.float64).repeat(copies, 1)
    alpha.requires_grad_(True)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return (Dirichlet(alpha), (alpha,),
            lambda a: (a / a.sum(-1, keepdim=True) * weights).sum(-1))


def integrand(name: str):
    if name == "Dirichlet":
        weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        return lambda z: (z * weights).sum(-1)
    return lambda z: z


@pytest.mark.parametrize("name", ["Gamma", "Beta", "Dirichlet"])
@pytest.mark.parametrize("estimator", ["pathwise", "reinforce"])
def test_the_gradient_of_the_mean_is_unbiased(name: str, estimator: str) -> None:
    """d/dparams E[z] (Dirichlet: of E[w . z]) from the closed-form mean, by autograd."""
    copies = 100_000
    q, leaves, mean_of = family(name, copies)
    est = estimators.get(estimator)
    assert est.applies_to(q)
    torch.manual_seed(1)
    out = est(q, integrand(name), 1)
    grads = torch.autograd.grad(out.loss.sum(), leaves)
    one = [leaf[:1].detach().clone().requires_grad_(True) for leaf in leaves]
    exact = torch.autograd.grad(mean_of(*one).sum(), one)
    for g, e in zip(grads, exact, strict=True):
        assert_unbiased_with_power(Summary.of(g), e[0], f"{estimator} on {name}",
                                   detectable=0.25 if estimator == "reinforce" else 0.05)


def test_gamma_log_moment_gradient_is_the_trigamma() -> None:
    """E[d z / d alpha / z] = d/dalpha E[log z] = trigamma(alpha) for Gamma(alpha, 1)."""
    copies = 100_000
    a = torch.full((copies,), 2.0, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(2)
    out = estimators.get("pathwise")(Gamma(a, torch.ones_like(a)), torch.log, 1)
    (g,) = torch.autograd.grad(out.loss.sum(), [a])
    one = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    (trigamma,) = torch.autograd.grad(torch.digamma(one), [one])
    assert_unbiased_with_power(Summary.of(g), trigamma, "pathwise E log z", detectable=0.05)


@pytest.mark.parametrize("estimator", ["pathwise", "reinforce"])
def test_dirichlet_toy_gradients_are_unbiased(estimator: str) -> None:
    toy = objectives.get("dirichlet_toy").double()
    torch.manual_seed(3)
    grads, exact = toy_gradient_estimates(toy, estimators.get(estimator), 2, copies=100_000)
    assert_unbiased_with_power(Summary.of(grads), exact, f"{estimator} on dirichlet_toy",
                               detectable=0.25)


def test_dirichlet_toy_exact_value_matches_monte_carlo_and_refuses_other_estimators() -> None:
    toy = objectives.get("dirichlet_toy", concentration=[0.5, 4.0], target=[1.0, 0.0]).double()
    with torch.no_grad():
        z = toy.posterior(None).sample((400_000,))
        cost = toy.cost(z)
    Summary.of(cost).assert_matches(-toy.exact(None), "E cost")
    for name in ("straight_through", "reinmax", "measure_valued", "exact"):
        with pytest.raises(estimators.UnsupportedDistributionError):
            toy.check(estimators.get(name))
    with pytest.raises(EstimatorError, match="explicit noise is supported"):
        toy.estimate(None, estimators.get("pathwise"), 1, noise=torch.rand(1, 1, 2))
    with pytest.raises(objectives.ObjectiveError, match="target must have 2 entries"):
        objectives.get("dirichlet_toy", concentration=[1.0, 1.0], target=[0.0])
