"""Concrete densities in log space, and the densities straight-through estimators evaluate: right
(torch's densities where those are finite, change of variables, normalisation, the sampler's
law), finite where probability-space ones are not, and differentiable along the estimator's path
(the sampled KL's gradient equals a hand-written surrogate's with the same noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Distribution,
    Independent,
    OneHotCategorical,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
)
from torch.distributions.relaxed_bernoulli import LogitRelaxedBernoulli
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical
from torch.overrides import TorchFunctionMode

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators import densities, distributions
from estibench.estimators.noise import (
    carrying,
    draw_noise,
    gumbel,
    hard_sample,
    log_space,
    logistic,
    relaxed_sample,
    uniform,
)
from tests.helpers import binary_batch, small_bernoulli_vae, small_categorical_vae


def _exp_concrete_sample(logits: torch.Tensor, tau: float, n: int) -> torch.Tensor:
    g = gumbel(uniform((n, *logits.shape), logits.dtype))
    return torch.log_softmax((logits + g) / tau, -1)


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_log_space_densities_match_torch_in_float64_where_finite(tau: float) -> None:
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64)
    y = _exp_concrete_sample(logits, tau, 200)
    t = torch.tensor(tau, dtype=torch.float64)
    ours = densities.concrete_log_prob(logits, tau, y)
    theirs = RelaxedOneHotCategorical(t, logits=logits).log_prob(y.exp())
    finite = theirs.isfinite()
    assert finite.float().mean() > 0.9
    torch.testing.assert_close(ours[finite], theirs[finite], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(densities.exp_concrete_log_prob(logits, tau, y),
                               ExpRelaxedCategorical(t, logits=logits).log_prob(y),
                               rtol=1e-9, atol=1e-9)
    s = (logits[..., 0] + logistic(torch.rand(200, 5, dtype=torch.float64))) / tau
    torch.testing.assert_close(densities.logit_concrete_log_prob(logits[..., 0], tau, s),
                               LogitRelaxedBernoulli(t, logits=logits[..., 0]).log_prob(s))
    x = torch.sigmoid(s)
    inside = (x > 0) & (x < 1)
    torch.testing.assert_close(
        densities.binary_concrete_log_prob(logits[..., 0], tau, s)[inside],
        RelaxedBernoulli(t, logits=logits[..., 0]).log_prob(x)[inside])


def test_change_of_variables_two_categories_are_the_binary_concrete() -> None:
    """For K = 2, x_1 = sigmoid((p_1 - p_2) / tau): the categorical Concrete density at (x, 1 - x)
    (Lebesgue on x_1) is the binary Concrete density of x with logit a_1 - a_2, and that is the
    logit-space density divided by dx/ds = sigmoid(s) sigmoid(-s)."""
    a = torch.tensor([0.7, -0.4], dtype=torch.float64)
    s = torch.linspace(-30, 30, 601, dtype=torch.float64)
    tau = 0.4
    y = torch.stack([torch.nn.functional.logsigmoid(s), torch.nn.functional.logsigmoid(-s)], -1)
    two = densities.concrete_log_prob(a, tau, y)
    binary = densities.binary_concrete_log_prob(a[0] - a[1], tau, s)
    torch.testing.assert_close(two, binary, rtol=1e-12, atol=1e-12)
    jacobian = torch.sigmoid(s).log() + torch.sigmoid(-s).log()
    torch.testing.assert_close(
        binary, densities.logit_concrete_log_prob(a[0] - a[1], tau, s) - jacobian)


def _triangle(nodes: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on the simplex {x_1 + x_2 < 1} (x_1 = u, x_2 = (1-u) v)."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    t, w = torch.tensor((t + 1) / 2), torch.tensor(w / 2)
    u, v = torch.meshgrid(t, t, indexing="ij")
    x1, x2 = u, (1 - u) * v
    x = torch.stack([x1, x2, 1 - x1 - x2], -1).reshape(-1, 3)
    weight = (w[:, None] * w[None, :] * (1 - u)).reshape(-1)
    return x, weight


def test_the_concrete_density_integrates_to_one_and_is_the_samplers_law() -> None:
    """K = 3 at tau = 1: the density computed from y = log x integrates to 1 over the simplex,
    and P(x_1 > 1/2) by quadrature matches the frequency of relaxed samples (binomial error)."""
    logits = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64)
    x, weight = _triangle()
    density = densities.concrete_log_prob(logits, 1.0, x.log()).exp()
    assert float((weight * density).sum()) == pytest.approx(1.0, abs=1e-4)  # O(nodes^-2)
    p = float((weight * density * (x[:, 0] > 0.5)).sum())
    # the indicator's edge costs the quadrature accuracy: it is checked against 1/sqrt(n) only
    q = OneHotCategorical(logits=logits)
    n = 200_000
    torch.manual_seed(3)
    soft = relaxed_sample(q, draw_noise(q, n), 1.0)
    freq = float((soft[:, 0] > 0.5).double().mean())
    assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / n) + 2e-3


def test_log_space_densities_are_finite_where_probability_space_ones_are_not() -> None:
    torch.manual_seed(4)
    logits = 3 * torch.randn(1000, 4)
    y = _exp_concrete_sample(logits, 0.1, 1)
    assert not RelaxedOneHotCategorical(torch.tensor(0.1), logits=logits).log_prob(
        y.exp()).isfinite().all()
    assert densities.concrete_log_prob(logits, 0.1, y).isfinite().all()


# -- no non-finite gradients at small temperatures ------------------------------------------

DRAWS = 100_000


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("model", ["categorical_vae", "bernoulli_vae"])
def test_gumbel_softmax_with_a_sampled_kl_is_finite_at_tau_0_1(model: str, dtype) -> None:
    """10^5 independent estimates with logits five times those at initialisation (sharper, as
    after training): the batch is repeated and each copy has its own row of distribution
    parameters, so row n of the gradient is estimate n. (Probability-space densities gave 793
    and 225 non-finite rows here for the categorical latent, in float32 and bfloat16.)"""
    torch.manual_seed(5)
    options = ({"variables": 2, "categories": 4} if model == "categorical_vae"
               else {"latent_dim": 4})
    objective = objectives.get(model, hidden=32, kl="sampled", **options).to(dtype)
    x = (torch.rand(16, 64) < 0.5).to(dtype)
    with torch.no_grad():
        params = 5 * objective.posterior_params(x)
        params = params.repeat(DRAWS // 16, *[1] * (params.dim() - 1)).requires_grad_(True)
    xs = x.repeat(DRAWS // 16, 1)
    estimator = estimators.get("gumbel_softmax", temperature=0.1)
    out = objective.estimate(xs, estimator, 1, params=params)
    (grad,) = torch.autograd.grad(out.loss.sum(), params)
    bad = int((~grad.reshape(DRAWS, -1).isfinite().all(1)).sum())
    assert bad == 0 and bool(out.loss.isfinite().all()), f"{bad} of {DRAWS} non-finite"


# -- the sampled KL of the straight-through estimators ---------------------------------------

def _kl_gradient(objective, estimator, x, noise) -> torch.Tensor:
    """Gradient (w.r.t. the distribution parameters) of the sampled-KL part of the ELBO: the
    sampled-KL ELBO minus the likelihood term alone, both with the same noise."""
    params = objective.posterior_params(x).detach().requires_grad_(True)
    q = objective.distribution(params)
    elbo = objective.elbo(x, estimator, noise.shape[0], kl="sampled", noise=noise, params=params)
    likelihood = estimator(q, lambda z: objective.log_likelihood(x, z), noise.shape[0],
                           noise=noise)
    (g,) = torch.autograd.grad((elbo.loss - likelihood.loss).sum(), params)
    return g


def _relaxed(logits: torch.Tensor, u: torch.Tensor, tau: float, binary: bool) -> torch.Tensor:
    if binary:
        return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    return torch.softmax((logits - torch.log(-torch.log(u))) / tau, -1)


def _concrete(logits: torch.Tensor, tau: float, binary: bool) -> Distribution:
    t = torch.tensor(tau, dtype=logits.dtype)
    d = RelaxedBernoulli(t, logits=logits) if binary else RelaxedOneHotCategorical(t, logits=logits)
    return Independent(d, 1)


def _discrete(logits: torch.Tensor, binary: bool) -> Distribution:
    return Independent(Bernoulli(logits=logits) if binary else OneHotCategorical(logits=logits), 1)


MODELS = {"categorical": small_categorical_vae, "bernoulli": small_bernoulli_vae}


def _setup(model: str, seed: int = 7):
    objective = MODELS[model]("sampled")
    x = binary_batch(3, 8)
    with torch.no_grad():
        q = objective.posterior(x)
    noise = draw_noise(q, 4, torch.Generator().manual_seed(seed))
    prior_logits = objective.prior(x).base_dist.logits.detach()
    return objective, x, noise, prior_logits, model == "bernoulli"


@pytest.mark.parametrize("direct_term", [True, False])
@pytest.mark.parametrize("model", list(MODELS))
def test_st_gumbel_sampled_kl_gradient_is_the_concrete_densities_at_the_relaxed_sample(
        model: str, direct_term: bool) -> None:
    objective, x, noise, prior_logits, binary = _setup(model)
    tau = 0.7
    estimator = estimators.get("st_gumbel", temperature=tau, direct_term=direct_term)
    ours = _kl_gradient(objective, estimator, x, noise)

    # Hand-written: d/dphi mean_s [log p_c(x_s) - log q_c(x_s)], x_s the relaxed sample.
    logits = objective.posterior_params(x).detach().requires_grad_(True)
    soft = _relaxed(logits, noise, tau, binary)
    q_logits = logits if direct_term else logits.detach()
    kl = _concrete(prior_logits, tau, binary).log_prob(soft) - _concrete(
        q_logits, tau, binary).log_prob(soft)
    (theirs,) = torch.autograd.grad(kl.mean(0).sum(), logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    assert float(theirs.norm()) > 1e-3  # the KL's gradient is there to lose


@pytest.mark.parametrize("model", list(MODELS))
def test_straight_through_sampled_kl_gradient_flows_through_the_mean(model: str) -> None:
    objective, x, noise, prior_logits, binary = _setup(model)
    ours = _kl_gradient(objective, estimators.get("straight_through"), x, noise)

    logits = objective.posterior_params(x).detach().requires_grad_(True)
    hard = hard_sample(objective.distribution(logits), noise)
    probs = torch.sigmoid(logits) if binary else torch.softmax(logits, -1)
    z = hard + (probs - probs.detach())
    if binary:  # log q(z) = z log sigmoid(l) + (1 - z) log sigmoid(-l), linear in z
        def log_density(a: torch.Tensor) -> torch.Tensor:
            logsig = torch.nn.functional.logsigmoid
            return (z * logsig(a) + (1 - z) * logsig(-a)).sum(-1)
    else:
        def log_density(a: torch.Tensor) -> torch.Tensor:
            return (z * torch.log_softmax(a, -1)).sum((-1, -2))
    kl = log_density(prior_logits) - log_density(logits)
    (theirs,) = torch.autograd.grad(kl.mean(0).sum(), logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)
    assert float(theirs.norm()) > 1e-3


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("name", ["st_gumbel", "straight_through"])
def test_straight_through_elbo_values_are_those_of_the_discrete_model(model: str,
                                                                      name: str) -> None:
    """Forward values at the hard sample: the same as REINFORCE's with the same noise."""
    objective, x, noise, _, _ = _setup(model)
    values = [objective.elbo(x, estimators.get(e), 4, kl="sampled", noise=noise).value
              for e in (name, "reinforce")]
    torch.testing.assert_close(values[0], values[1], rtol=1e-12, atol=1e-12)


def test_the_discrete_kl_terms_match_torch_densities() -> None:
    objective, x, noise, prior_logits, _ = _setup("categorical")
    hard = hard_sample(objective.posterior(x), noise)
    for name in ("st_gumbel", "straight_through"):
        estimator = estimators.get(name)
        z = hard_sample(objective.posterior(x), noise)
        if name == "st_gumbel":  # its densities need the relaxed sample the hard one carries
            soft = relaxed_sample(objective.posterior(x), noise, 1.0)
            z = carrying(z, log_space(soft))
        ours = estimator.relax(objective.posterior(x)).log_prob(z)
        torch.testing.assert_close(ours, _discrete(objective.posterior_params(x), False)
                                   .log_prob(hard))


# -- validate_args=False is what happens ------------------------------------------------------

class _Count(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _calls(objective, x, noise) -> int:
    with _Count() as count:
        objective.elbo(x, estimators.get("reinforce", baseline="loo"), 4, kl="sampled",
                       noise=noise).loss.sum()
    return count.calls


def test_categorical_distributions_do_not_validate_when_told_not_to() -> None:
    objective, x, noise, _, _ = _setup("categorical")
    q = objective.posterior(x)
    for d in (q, objective.prior(x), distributions.detached(q)):
        assert d.base_dist._validate_args is False
        assert d.base_dist._categorical._validate_args is False
    built = _calls(objective, x, noise)
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        unvalidated = _calls(objective, x, noise)
    finally:
        torch.distributions.Distribution.set_default_validate_args(True)
    assert built == unvalidated
