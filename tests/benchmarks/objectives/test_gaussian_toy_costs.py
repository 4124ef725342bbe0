"""The Gaussian toy's costs (Mohamed et al. 2020, section 3): closed forms against quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss

from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import ObjectiveError

COSTS = {
    "quadratic": lambda x, k: (x - k) ** 2,
    "exp": lambda x, k: np.exp(-k * x**2),
    "cos": lambda x, k: np.cos(k * x),
}
NODES, WEIGHTS = hermegauss(120)  # probabilists' Gauss-Hermite: weight exp(-x^2 / 2)


def quadrature(cost: str, mu: float, sigma: float, k: float) -> float:
    """E_{N(mu, sigma^2)}[cost(x)] by Gauss-Hermite quadrature."""
    return float(WEIGHTS @ COSTS[cost](mu + sigma * NODES, k) / math.sqrt(2 * math.pi))


CASES = [(cost, mu, sigma, k) for cost in COSTS for mu, sigma in ((1.0, 1.0), (-0.4, 0.6))
         for k in (-2.0, 0.3, 1.0, 3.0) if not (cost == "exp" and k < 0)]


@pytest.mark.parametrize(("cost", "mu", "sigma", "k"), CASES)
def test_exact_value_and_gradient_match_quadrature(cost, mu, sigma, k) -> None:
    toy = objectives.get("gaussian_toy", mean=mu, std=sigma, target=k, cost=cost).double()
    stored = toy.phi.detach()[0]
    mu, sigma = float(stored[0]), math.exp(float(stored[1]))  # as stored (float32)
    value = toy.exact()
    assert float(value) == pytest.approx(-quadrature(cost, mu, sigma, k), rel=1e-9, abs=1e-12)
    (grad,) = torch.autograd.grad(value.sum(), toy.phi)
    h = 1e-5  # central differences of the quadrature in (mu, log sigma)
    d_mu = (quadrature(cost, mu + h, sigma, k) - quadrature(cost, mu - h, sigma, k)) / (2 * h)
    d_log = (quadrature(cost, mu, sigma * math.exp(h), k)
             - quadrature(cost, mu, sigma * math.exp(-h), k)) / (2 * h)
    assert grad[0].tolist() == pytest.approx([-d_mu, -d_log], rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("parameters", ["mean", "scale"])
def test_one_learned_coordinate_is_that_coordinate_of_both(parameters) -> None:
    both = objectives.get("gaussian_toy", target=0.7, cost="cos").double()
    one = objectives.get("gaussian_toy", target=0.7, cost="cos", parameters=parameters).double()
    assert one.phi.shape == (1, 1)
    assert float(one.exact()) == pytest.approx(float(both.exact()))
    (g_both,) = torch.autograd.grad(both.exact().sum(), both.phi)
    (g_one,) = torch.autograd.grad(one.exact().sum(), one.phi)
    index = 0 if parameters == "mean" else 1
    assert float(g_one[0, 0]) == pytest.approx(float(g_both[0, index]))
    q = one.posterior(None)
    assert (float(q.loc[0]), float(q.scale[0])) == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize(("options", "field"), [
    ({"cost": "cubic"}, "cost must be one of quadratic, exp, cos"),
    ({"parameters": "all"}, "parameters must be one of both, mean, scale"),
    ({"cost": "exp", "target": -1.0}, "1 + 2 target std^2 > 0"),
])
def test_bad_options_name_the_field(options, field) -> None:
    with pytest.raises(ObjectiveError, match=field.replace("^", r"\^").replace("+", r"\+")):
        objectives.get("gaussian_toy", **options)
