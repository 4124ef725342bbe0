"""Measure-valued derivatives on the Gaussian toy (T3): means and variances of the mean (coupled
Weibull) and scale (double-sided Maxwell) estimators, derived by quadrature in the test: 1-D
over the Weibull variate w, 2-D over the Maxwell variate m and the coupling uniform u."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch.distributions import Independent, Normal

from estibench import estimators
from estibench.estimators.noise import uniform
from tests.helpers import Summary, bonferroni_bound

CASES = [(1.0, 1.0, 0.0), (0.3, 1.7, -0.4)]  # (mu, sigma, k): f = (x - k)^2


def moments(values) -> tuple[float, float, float]:
    """(mean, variance, fourth central moment) of an estimate given its raw moments 1-4."""
    m1, m2, m3, m4 = values
    var = m2 - m1**2
    return m1, var, m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4


def mean_estimator_moments(mu: float, sigma: float, k: float):
    """g = [f(mu + sigma w) - f(mu - sigma w)] / (sigma sqrt(2 pi)), w ~ Rayleigh
    (density w e^{-w^2/2}), by quadrature over w."""
    def g(w):
        return (((mu + sigma * w - k) ** 2 - (mu - sigma * w - k) ** 2)
                / (sigma * math.sqrt(2 * math.pi)))
    raw = [integrate.quad(lambda w, p=p: g(w) ** p * w * math.exp(-w * w / 2), 0, math.inf,
                          epsabs=1e-13)[0] for p in (1, 2, 3, 4)]
    return moments(raw)


def scale_estimator_moments(mu: float, sigma: float, k: float):
    """g = [f(mu + sigma m) - f(mu + sigma u m)] / sigma, m ~ double-sided Maxwell (density
    m^2 e^{-m^2/2} / sqrt(2 pi)), u ~ U(0, 1), by quadrature over (m, u)."""
    def g(m, u):
        return ((mu + sigma * m - k) ** 2 - (mu + sigma * u * m - k) ** 2) / sigma

    def density(m):
        return m * m * math.exp(-m * m / 2) / math.sqrt(2 * math.pi)
    raw = [integrate.dblquad(lambda u, m, p=p: g(m, u) ** p * density(m), -12, 12, 0, 1,
                             epsabs=1e-11)[0] for p in (1, 2, 3, 4)]
    return moments(raw)


def mvd_estimates(mu, sigma, k, copies, seed, dims=1):
    """Per-copy gradients w.r.t. (mu, sigma) of E (x - k)^2 and w.r.t. k."""
    loc = torch.full((copies, dims), mu, dtype=torch.float64, requires_grad=True)
    scale = torch.full((copies, dims), sigma, dtype=torch.float64, requires_grad=True)
    target = torch.full((copies, 1), k, dtype=torch.float64, requires_grad=True)
    q = Independent(Normal(loc, scale), 1)
    est = estimators.get("measure_valued")
    torch.manual_seed(seed)
    out = est(q, lambda z: ((z - target) ** 2).sum(-1), 1)
    g = torch.autograd.grad(out.loss.sum(), [loc, scale, target])
    return g, out


@pytest.mark.parametrize("mu, sigma, k", CASES)
def test_mvd_means_and_variances_match_quadrature(mu: float, sigma: float, k: float) -> None:
    copies = 200_000
    (g_mu, g_sigma, _), out = mvd_estimates(mu, sigma, k, copies, seed=1)
    for label, g, (mean, var, fourth), exact in (
        ("d/dmu", g_mu, mean_estimator_moments(mu, sigma, k), 2 * (mu - k)),
        ("d/dsigma", g_sigma, scale_estimator_moments(mu, sigma, k), 2 * sigma),
    ):
        assert mean == pytest.approx(exact, rel=1e-8)  # the quadrature is unbiased too
        summary = Summary.of(g)
        summary.assert_matches(torch.tensor([exact]), label)
        sample_var = float(g.var())
        se_var = math.sqrt((fourth - var**2) / copies)
        bound = bonferroni_bound(4)
        assert abs(sample_var - var) < bound * se_var, (label, sample_var, var, se_var)
        assert abs(sample_var - 1.25 * var) > bound * se_var  # power: a 25% error is seen
    if (mu, sigma, k) == (1.0, 1.0, 0.0):
        # f = x^2 at N(1, 1): Var is 16/pi - 4 for the mean, 8 for the scale (by quadrature).
        assert mean_estimator_moments(1, 1, 0)[1] == pytest.approx(16 / math.pi - 4, rel=1e-9)
    assert out.evaluations == 4  # 4 D with D = 1


def test_mvd_coordinates_value_and_the_integrands_own_parameters() -> None:
    """D = 3: each coordinate is its own 1-D estimator (f is separable), 4 D evaluations; the
    value estimates E f and the gradient w.r.t. f's parameter k is unbiased (-2 sum(mu - k))."""
    mu, sigma, k, dims = 0.3, 1.7, -0.4, 3
    (g_mu, g_sigma, g_k), out = mvd_estimates(mu, sigma, k, 50_000, seed=2, dims=dims)
    assert out.evaluations == 4 * dims
    assert g_mu.shape == (50_000, dims)
    Summary.of(g_mu).assert_matches(torch.full((dims,), 2 * (mu - k)), "d/dmu, D = 3")
    Summary.of(g_sigma).assert_matches(torch.full((dims,), 2 * sigma), "d/dsigma, D = 3")
    Summary.of(out.value[:, None]).assert_matches(
        torch.tensor([dims * ((mu - k) ** 2 + sigma**2)]), "value")
    Summary.of(g_k).assert_matches(torch.tensor([-2 * dims * (mu - k)]), "d/dk")


def test_mvd_needs_no_derivative_of_f() -> None:
    """f = 1[x > 0] (no derivative anywhere useful): d/dmu P(x > 0) = phi(mu / sigma) / sigma and
    d/dsigma = -mu phi(mu / sigma) / sigma^2."""
    mu, sigma, copies = 0.4, 1.3, 200_000
    loc = torch.full((copies,), mu, dtype=torch.float64, requires_grad=True)
    scale = torch.full((copies,), sigma, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(4)
    out = estimators.get("measure_valued")(Normal(loc, scale), lambda z: (z > 0).double(), 1)
    g_mu, g_sigma = torch.autograd.grad(out.loss.sum(), [loc, scale])
    density = math.exp(-(mu / sigma) ** 2 / 2) / math.sqrt(2 * math.pi)
    Summary.of(g_mu).assert_matches(torch.tensor([density / sigma]), "d/dmu")
    Summary.of(g_sigma).assert_matches(torch.tensor([-mu * density / sigma**2]), "d/dsigma")


def test_mvd_variates_from_uniforms_have_their_laws() -> None:
    """The Weibull and double-sided Maxwell maps: E w = sqrt(pi / 2), E w^2 = 2 (Rayleigh);
    E m^2 = 3, E m^4 = 15, E m = 0; u m ~ N(0, 1) (E (u m)^2 = 1)."""
    from estibench.estimators.measure_valued import double_sided_maxwell, weibull
    u = uniform((5, 400_000), torch.float64, generator=torch.Generator().manual_seed(5))
    w, m = weibull(u[0]), double_sided_maxwell(u[1], u[2], u[3])
    n = u[4] * m
    stats = torch.stack([w, w**2, m, m**2, m**4 / 5, n**2], 1)
    Summary.of(stats).assert_matches(torch.tensor([math.sqrt(math.pi / 2), 2, 0, 3, 3, 1]),
                                     "variate moments")


def test_mvd_refuses_non_gaussians() -> None:
    from torch.distributions import Bernoulli
    with pytest.raises(estimators.UnsupportedDistributionError, match="diagonal Gaussians"):
        estimators.get("measure_valued")(Bernoulli(logits=torch.zeros(2)), lambda z: z, 1)


def test_mvd_layouts_give_the_flat_expanded_estimate() -> None:
    """The estimate depends on q's numbers, not on how they are laid out: a shared loc
    broadcast against per-example scales, and a 2-D event (Independent over two dimensions),
    give, with the same noise, the loss, value and gradients of the same q with its
    parameters expanded and its event flattened to one dimension."""
    g = torch.Generator().manual_seed(3)
    est = estimators.get("measure_valued")
    shared = torch.randn(6, dtype=torch.float64, generator=g).requires_grad_()
    raw = torch.randn(5, 6, dtype=torch.float64, generator=g).requires_grad_()
    weights = torch.randn(6, dtype=torch.float64, generator=g)

    def f(z):  # not separable, so a wrong coordinate or set shows
        flat = z.flatten(-2) if z.dim() == 4 else z
        return torch.sin(flat @ weights) + (flat**2).sum(-1)

    def scale():  # rebuilt for each estimate: each has its own graph
        return torch.nn.functional.softplus(raw) + 0.1

    reference = Independent(Normal(shared.expand(5, 6), scale()), 1)
    noise = torch.rand(est.noise_shape(reference, 2), dtype=torch.float64, generator=g)
    noise = noise * 0.98 + 0.01
    expected = est(reference, f, 2, noise=noise)
    expected_grads = torch.autograd.grad(expected.loss.sum(), [shared, raw])
    for q, n in (
        (Independent(Normal(shared, scale()), 1), noise),  # broadcast loc
        (Independent(Normal(shared.expand(5, 6).reshape(5, 3, 2), scale().reshape(5, 3, 2)),
                     2), noise.reshape(12, 5, 3, 2)),  # a 2-D event
    ):
        out = est(q, f, 2, noise=n)
        torch.testing.assert_close(out.loss, expected.loss)
        torch.testing.assert_close(out.value, expected.value)
        for got, want in zip(torch.autograd.grad(out.loss.sum(), [shared, raw]),
                             expected_grads, strict=True):
            torch.testing.assert_close(got, want)
