"""IWAE, STL-IWAE and DReG on T5: z ~ N(0, 1), x | z ~ N(z, 1), x = 1, so p(z | x) = N(1/2, 1/2).

The reference is the exact gradient of the IWAE-K bound with respect to q's (mu, log sigma),
computed here by a Gauss-Hermite product grid over the K standard-normal draws (autograd
through the quadrature sum), its error estimated by comparing two grid sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from tests.helpers import Summary

X = 1.0
POSTERIOR = (0.5, 0.5 * math.log(0.5))  # (mu, log sigma) of p(z | x)
AWAY = (0.0, 0.0)  # q = N(0, 1)


def t5():
    """The linear-Gaussian objective set to T5, estimating the IWAE bound."""
    model = objectives.get("linear_gaussian", input_dim=1, latent_dim=1, noise_std=1.0,
                           bound="iwae").double()
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    return model


def estimates(estimator, k: int, at: tuple[float, float], copies: int, seed: int = 0):
    """Per-copy gradients (copies, 2) of the IWAE-k estimate w.r.t. q's (mu, log sigma)."""
    model = t5()
    x = torch.full((copies, 1), X, dtype=torch.float64)
    params = torch.tensor(at, dtype=torch.float64).reshape(1, 2, 1).repeat(copies, 1, 1)
    params.requires_grad_(True)
    torch.manual_seed(seed)
    out = model.estimate(x, estimator, k, params=params)
    (g,) = torch.autograd.grad(out.loss.sum(), [params])
    return g.reshape(copies, 2), out


def log_normal(z: torch.Tensor, mean, log_std) -> torch.Tensor:
    return -0.5 * ((z - mean) / torch.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)


def exact_bound_gradient(k: int, at: tuple[float, float], nodes: int) -> torch.Tensor:
    """d/d(mu, log sigma) of E log mean_k w(mu + sigma eps_k), eps_k ~ N(0, 1), on a
    `nodes`^k Gauss-Hermite product grid (probabilists' weights e^{-x^2/2}, normalized): the
    sum over k of w at the grid point is built by broadcasting one axis per draw."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    x, w = torch.tensor(x), torch.tensor(w / math.sqrt(2 * math.pi))
    theta = torch.tensor(at, dtype=torch.float64, requires_grad=True)
    z = theta[0] + torch.exp(theta[1]) * x
    log_w = log_normal(torch.tensor(X), z, torch.tensor(0.0)) + log_normal(
        z, 0.0, torch.tensor(0.0)) - log_normal(z, theta[0], theta[1])
    shift = log_w.detach().max()
    total, weight = 0, 1
    for axis in range(k):
        shape = [1] * k
        shape[axis] = nodes
        total = total + torch.exp(log_w - shift).reshape(shape)
        weight = weight * w.reshape(shape)
    bound = (weight * (torch.log(total / k) + shift)).sum()
    (g,) = torch.autograd.grad(bound, [theta])
    return g


@pytest.mark.parametrize("k", [1, 5])
def test_at_the_posterior_dreg_and_stl_are_exactly_zero_per_sample(k: int) -> None:
    for name, options in (("dreg", {}), ("iwae", {"direct_term": False})):
        g, _ = estimates(estimators.get(name, **options), k, POSTERIOR, 200)
        assert float(g.abs().max()) < 1e-12, (name, float(g.abs().max()))
    g, _ = estimates(estimators.get("iwae"), k, POSTERIOR, 200)
    assert float(g.abs().max()) > 1e-2  # full IWAE keeps the score term: not zero


def test_away_from_the_posterior_iwae_and_dreg_are_unbiased_stl_is_biased() -> None:
    """K = 5, q = N(0, 1): IWAE and DReG match the exact gradient of the bound; STL-IWAE does
    not (its bias is many standard errors); DReG's variance is below IWAE's."""
    k, copies = 5, 100_000
    exact = exact_bound_gradient(k, AWAY, 20)
    error = float((exact - exact_bound_gradient(k, AWAY, 16)).abs().max())
    assert error < 1e-4, error  # converged far below the Monte Carlo resolution (se ~ 2e-3)
    results = {}
    for label, est in (("iwae", estimators.get("iwae")), ("dreg", estimators.get("dreg")),
                       ("stl", estimators.get("iwae", direct_term=False))):
        g, out = estimates(est, k, AWAY, copies, seed=1)
        assert out.evaluations == k
        results[label] = Summary.of(g), g.var(0)
    for label in ("iwae", "dreg"):
        results[label][0].assert_matches(exact, label)
        results[label][0].assert_rejects(exact * 1.05 + 0.005, f"{label} (power)")
    stl = results["stl"][0]
    z = stl.assert_rejects(exact, "STL-IWAE at K = 5")
    assert z > 10, f"STL bias z = {z:.1f}, bias {(stl.mean - exact).tolist()}"
    ratio = results["dreg"][1] / results["iwae"][1]
    assert float(ratio.max()) < 0.5, f"Var(DReG) / Var(IWAE) per (mu, log sigma): {ratio.tolist()}"


def test_stl_is_unbiased_for_one_sample_and_flagged_biased() -> None:
    """K = 1: the ELBO gradient (1-D quadrature of the same bound); STL = DReG sample by sample."""
    exact = exact_bound_gradient(1, AWAY, 40)
    stl, dreg = estimators.get("iwae", direct_term=False), estimators.get("dreg")
    g_stl, _ = estimates(stl, 1, AWAY, 100_000, seed=2)
    g_dreg, _ = estimates(dreg, 1, AWAY, 100_000, seed=2)
    assert torch.allclose(g_stl, g_dreg, atol=1e-12)
    Summary.of(g_stl).assert_matches(exact, "STL at K = 1")
    assert stl.unbiased is False and estimators.get("iwae").unbiased is True
    assert dreg.unbiased is True and dreg.estimates == "iwae" and dreg.direct_term is False


def test_dreg_keeps_the_iwae_gradient_for_the_model_parameters() -> None:
    """Same noise: the decoder gradients of DReG and IWAE agree sample by sample (log q does not
    depend on the model), and the value is the IWAE bound estimate."""
    model = t5()
    x = torch.full((64, 1), X, dtype=torch.float64)
    decoder = [model.weight, model.bias, model.log_noise_std]
    grads, values = [], []
    for est in (estimators.get("iwae"), estimators.get("dreg")):
        torch.manual_seed(3)
        out = model.estimate(x, est, 5)
        grads.append(torch.autograd.grad(out.loss.sum(), decoder))
        values.append(out.value)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.allclose(values[0], values[1])
    with torch.no_grad():
        q, z = model.posterior(x), out.samples
        log_w = model.log_likelihood(x, z) + model.prior().log_prob(z) - q.log_prob(z)
    assert torch.allclose(values[1], torch.logsumexp(log_w, 0) - math.log(5))


def test_iwae_estimators_refuse_an_elbo_objective() -> None:
    model = objectives.get("linear_gaussian", input_dim=2, latent_dim=1)
    with pytest.raises(estimators.EstimatorError, match="set bound"):
        model.check(estimators.get("dreg"))
