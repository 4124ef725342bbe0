"""NVIL, MuProp, REBAR and RELAX: exact means and variances, and unbiasedness.

Every reference value is derived here: by enumeration over the discrete sample (MuProp,
REINFORCE), or by Gauss-Legendre quadrature over the two uniforms (u, v) of REBAR / RELAX, split
at the threshold u = 1 - sigma where the sample flips. The estimators are evaluated at the
quadrature nodes through their explicit-noise path, compared node by node with the paper's
formula written out independently below, and integrated; a Monte Carlo check with random noise
then confirms the variance within 2%, with M chosen from the fourth moment so that 2% is more
than 4 standard errors of the sample variance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.estimators.noise import uniform
from tests.helpers import (
    Summary,
    assert_unbiased_with_power,
    binary_batch,
    exact_gradients,
    gradient_estimates,
    small_bernoulli_vae,
    small_categorical_vae,
)

F64 = torch.float64
TARGET = 0.499  # the REBAR / RELAX toy, E[(b - t)^2]


def toy_estimates(estimator, phi: float, noise: torch.Tensor, target: float = TARGET):
    """One estimate per column of `noise` (streams, n) on the toy at logit phi, and the exact
    gradient (autograd of the enumerated objective)."""
    toy = objectives.get("bernoulli_toy", target=target).double()
    leaf = torch.full((noise.shape[-1],), phi, dtype=F64, requires_grad=True)
    out = toy.estimate(None, estimator, 1, noise=noise, params=leaf)
    (g,) = torch.autograd.grad(out.loss.sum(), [leaf])
    one = torch.tensor([phi], dtype=F64, requires_grad=True)
    (exact,) = torch.autograd.grad(toy.exact(None, params=one).sum(), [one])
    return g.detach(), float(exact)


def f_toy(x, target=TARGET):
    return -((x - target) ** 2)


def df_toy(x, target=TARGET):
    return -2 * (x - target)


def legendre(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre on (a, b) after the substitution x = a + (b - a) t^3 / (t^3 + (1 - t)^3),
    flat at both ends: the relaxations behave like u^(1 / lambda) at u -> 0 (not smooth), which
    the substitution turns into a high power of t."""
    x, w = np.polynomial.legendre.leggauss(n)
    t, wt = (x + 1) / 2, w / 2
    num, den = t**3, t**3 + (1 - t) ** 3
    dx = (3 * t**2 * den - num * (3 * t**2 - 3 * (1 - t) ** 2)) / den**2
    return a + (b - a) * num / den, (b - a) * dx * wt


def uv_grid(phi: float, n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes (2, N) = (u; v) and weights (N,) of the product rule on (0, 1)^2, u split at the
    threshold 1 - sigma(phi) where b flips."""
    threshold = 1 / (1 + math.exp(phi))
    pieces = [legendre(0.0, threshold, n), legendre(threshold, 1.0, n)]
    u = np.concatenate([p[0] for p in pieces])
    wu = np.concatenate([p[1] for p in pieces])
    v, wv = legendre(0.0, 1.0, n)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    weights = np.outer(wu, wv).reshape(-1)
    nodes = np.stack([uu.reshape(-1), vv.reshape(-1)])
    return torch.tensor(nodes, dtype=F64), torch.tensor(weights, dtype=F64)


def rebar_formula(phi: float, u, v, eta: float, lam: float):
    """The REBAR estimate on the toy from the paper's formula (Tucker et al. 2017, with the
    total derivative of z~ in phi at fixed (v, b)), written out without autograd."""
    s = 1 / (1 + math.exp(-phi))
    b = (u > 1 - s).to(F64)
    z = phi + torch.log(u) - torch.log1p(-u)
    v_cond = torch.where(b > 0, v * s + 1 - s, v * (1 - s))
    z_tilde = phi + torch.log(v_cond) - torch.log1p(-v_cond)
    dv_ds = torch.where(b > 0, v - 1, -v)
    dz_tilde = 1 + dv_ds * s * (1 - s) / (v_cond * (1 - v_cond))

    def relaxed(t):
        return torch.sigmoid(t / lam)

    def pathwise(t, dt):
        r = relaxed(t)
        return df_toy(r) * r * (1 - r) / lam * dt

    score = (f_toy(b) - eta * f_toy(relaxed(z_tilde))) * (b - s)
    return score + eta * pathwise(z, 1.0) - eta * pathwise(z_tilde, dz_tilde)


def moments(values: torch.Tensor, weights: torch.Tensor) -> tuple[float, float, float]:
    """(mean, variance, fourth central moment) of a weighted discrete or quadrature law."""
    mean = float((weights * values).sum())
    centred = values - mean
    return mean, float((weights * centred**2).sum()), float((weights * centred**4).sum())


def replicas_for(variance: float, fourth: float, tolerance: float = 0.02) -> int:
    """M such that `tolerance` is 4 standard errors of the sample variance of M draws."""
    # A two-point law with equal weights has fourth = variance^2: any M would do.
    return max(10_000, math.ceil((4 / tolerance) ** 2 * (fourth - variance**2) / variance**2))


def assert_mc_variance(draw, variance: float, fourth: float, label: str, cap: int = 3_000_000):
    """The sample variance of M = replicas_for(...) random estimates is within 2%."""
    m = replicas_for(variance, fourth)
    assert m <= cap, f"{label}: {m} replicas needed"
    sample = draw(m)
    assert sample.shape[0] == m
    ratio = float(sample.var()) / variance
    assert abs(ratio - 1) < 0.02, f"{label}: MC variance / exact = {ratio:.4f} (M = {m})"


def uniforms(shape, seed: int) -> torch.Tensor:
    return uniform(shape, F64, generator=torch.Generator().manual_seed(seed))


def zero_network(estimator) -> None:
    for p in estimator.network.parameters():
        torch.nn.init.zeros_(p)


# T1: the Bernoulli toy -----------------------------------------------------------------------


def enumerated_reinforce(phi: float) -> tuple[float, float, float]:
    s = 1 / (1 + math.exp(-phi))
    b = torch.tensor([0.0, 1.0], dtype=F64)
    return moments(f_toy(b) * (b - s), torch.tensor([1 - s, s], dtype=F64))


def forced_bits(phi: float, n: int = 1) -> torch.Tensor:
    """Uniform noise (1, 2n) giving b = 0 in the first n columns and b = 1 in the others."""
    s = 1 / (1 + math.exp(-phi))
    low, high = (1 - s) / 2, 1 - s / 2
    return torch.tensor([[low] * n + [high] * n], dtype=F64)


@pytest.mark.parametrize("phi", [0.0, 1.0])
def test_muprop_on_the_toy_by_enumeration(phi: float) -> None:
    estimator = estimators.get("muprop")
    g, exact = toy_estimates(estimator, phi, forced_bits(phi))
    s = 1 / (1 + math.exp(-phi))
    b = torch.tensor([0.0, 1.0], dtype=F64)
    mean_field = torch.tensor(s, dtype=F64)
    taylor = f_toy(mean_field) + df_toy(mean_field) * (b - s)
    formula = (f_toy(b) - taylor) * (b - s) + df_toy(mean_field) * s * (1 - s)
    torch.testing.assert_close(g, formula, rtol=1e-12, atol=1e-15)
    mean, variance, fourth = moments(g, torch.tensor([1 - s, s], dtype=F64))
    assert mean == pytest.approx(exact, rel=1e-10, abs=1e-15)
    _, reinforce_variance, _ = enumerated_reinforce(phi)
    if phi == 0.0:  # f'(sigma) sigma(1 - sigma) absorbs the linear part: same as REINFORCE
        assert variance == pytest.approx(reinforce_variance, rel=1e-3)
    else:  # |f'| >> |f(1) - f(0)|: the Taylor term hurts off phi = 0
        assert variance > 1.5 * reinforce_variance

    def draw(m):
        return toy_estimates(estimator, phi, uniforms((1, m), seed=5))[0]

    assert_mc_variance(draw, variance, fourth, f"muprop phi={phi}")


@pytest.mark.parametrize("phi", [0.0, 1.0])
@pytest.mark.parametrize("lam", [0.5, math.exp(0.5)])
def test_rebar_on_the_toy_by_quadrature(phi: float, lam: float) -> None:
    estimator = estimators.get("rebar", temperature=lam).double()
    nodes, weights = uv_grid(phi)
    g, exact = toy_estimates(estimator, phi, nodes)
    formula = rebar_formula(phi, nodes[0], nodes[1], eta=1.0, lam=lam)
    torch.testing.assert_close(g, formula, rtol=1e-6, atol=1e-7)  # the formula's naive logs
    mean, variance, fourth = moments(g, weights)
    # The quadrature mean is the exact gradient: the conditional re-noising is right.
    assert mean == pytest.approx(exact, rel=1e-6, abs=1e-9)
    _, reinforce_variance, _ = enumerated_reinforce(phi)
    if phi == 0.0:  # with eta = 1, REBAR is worse than REINFORCE on this toy
        assert variance > reinforce_variance

    def draw(m):
        return toy_estimates(estimator, phi, uniforms((2, m), seed=6))[0]

    assert_mc_variance(draw, variance, fourth, f"rebar phi={phi} lambda={lam:.3f}")


@pytest.mark.parametrize("phi", [0.0, 1.0])
def test_relax_with_a_zero_network_is_reinforce(phi: float) -> None:
    relax = estimators.get("relax").double()
    relax.prepare(Bernoulli(logits=torch.zeros(1, dtype=F64)))
    zero_network(relax)
    noise = uniforms((2, 50_000), seed=7)
    g, _ = toy_estimates(relax, phi, noise)
    reference, _ = toy_estimates(estimators.get("reinforce"), phi, noise[:1])
    torch.testing.assert_close(g, reference, rtol=1e-12, atol=1e-15)
    mean, variance, _ = enumerated_reinforce(phi)
    assert float(g.var()) == pytest.approx(variance, rel=0.05)
    assert float(g.mean()) == pytest.approx(mean, abs=5 * math.sqrt(variance / 50_000))


@pytest.mark.parametrize("phi", [0.0, 1.0])
def test_relax_with_f_of_the_relaxation_is_rebar_at_eta_1(phi: float) -> None:
    relax = estimators.get("relax", relaxed_f=True, temperature=0.5).double()
    relax.prepare(Bernoulli(logits=torch.zeros(1, dtype=F64)))
    zero_network(relax)
    nodes, _ = uv_grid(phi, n=40)
    g, _ = toy_estimates(relax, phi, nodes)
    reference, _ = toy_estimates(estimators.get("rebar", temperature=0.5).double(), phi, nodes)
    torch.testing.assert_close(g, reference, rtol=1e-12, atol=1e-15)


def test_rebar_quadrature_mean_is_exact_for_other_eta_and_lambda() -> None:
    """Unbiased for any fixed (eta, lambda): the quadrature mean is the exact gradient."""
    for phi, eta, lam in [(1.0, 0.3, 0.2), (-0.7, 1.8, 2.0)]:
        estimator = estimators.get("rebar", temperature=lam, eta=eta).double()
        nodes, weights = uv_grid(phi)
        g, exact = toy_estimates(estimator, phi, nodes)
        torch.testing.assert_close(g, rebar_formula(phi, nodes[0], nodes[1], eta, lam),
                                   rtol=1e-6, atol=1e-7)
        assert float((weights * g).sum()) == pytest.approx(exact, rel=1e-6, abs=1e-9)


# T2: one categorical, K = 3 ------------------------------------------------------------------

PI = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
C = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
CATEGORICAL_F = {
    "linear": lambda y: y @ C,
    "quadratic": lambda y: (y @ C - 2) ** 2,
    "cubic": lambda y: (y @ C) ** 3 / 10,
}


def categorical_estimates(estimator, f, noise: torch.Tensor, theta=None):
    """One estimate of grad_theta E[f] per row of noise (streams, n, 3), at theta = log pi."""
    theta = PI.log() if theta is None else theta
    leaf = theta.expand(noise.shape[1], 3).clone().requires_grad_(True)
    q = OneHotCategorical(logits=leaf, validate_args=False)
    out = estimator(q, f, 1, noise=noise)
    (g,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return g.detach()


def categorical_exact(f, theta=None):
    theta = (PI.log() if theta is None else theta).clone().requires_grad_(True)
    value = (torch.softmax(theta, -1) * f(torch.eye(3, dtype=F64))).sum()
    (g,) = torch.autograd.grad(value, [theta])
    return g


@pytest.mark.parametrize("kind", list(CATEGORICAL_F))
def test_muprop_on_one_categorical_by_enumeration(kind: str) -> None:
    f = CATEGORICAL_F[kind]
    noise = torch.full((1, 3, 3), 0.5, dtype=F64)
    for k in range(3):  # a Gumbel of -log(1e-9) ~ 21 makes category k the argmax
        noise[0, k, k] = 1 - 1e-9
    estimator = estimators.get("muprop")
    g = categorical_estimates(estimator, f, noise)
    point = PI.clone().requires_grad_(True)
    (slope,) = torch.autograd.grad(f(point), [point])
    jacobian = torch.diag(PI) - torch.outer(PI, PI)
    eye = torch.eye(3, dtype=F64)
    taylor = f(PI) + (eye - PI) @ slope
    formula = (f(eye) - taylor)[:, None] * (eye - PI) + jacobian @ slope
    torch.testing.assert_close(g, formula, rtol=1e-10, atol=1e-12)
    mean = PI @ g
    torch.testing.assert_close(mean, categorical_exact(f), rtol=1e-10, atol=1e-12)
    deviations = ((g - mean) ** 2).sum(-1)  # the trace of the covariance, per category
    total_variance = float(PI @ deviations)
    if kind == "linear":  # the Taylor expansion is f itself
        assert total_variance < 1e-20
        return
    fourth = float(PI @ deviations**2)

    def draw(m):
        rows = categorical_estimates(estimator, f, uniforms((1, m, 3), seed=8))
        return rows - mean

    sample = None
    m = replicas_for(total_variance, fourth)
    sample = draw(m)
    ratio = float(sample.var(0).sum()) / total_variance
    assert abs(ratio - 1) < 0.02, f"muprop {kind}: sumVar ratio {ratio:.4f} (M = {m})"


# Unbiasedness by Monte Carlo -----------------------------------------------------------------

W = torch.tensor([1.0, 2.0], dtype=F64)


def cubic_two_bits(y: torch.Tensor) -> torch.Tensor:
    return (y @ W - 0.7) ** 3


def _prepared(name: str, q, **options):
    """Built, prepared on q and randomized where it has a network: any fixed parameters."""
    torch.manual_seed(3)
    estimator = estimators.get(name, **options).double()
    estimator.prepare(q)
    for p in estimator.parameters():
        if p.dim() > 0:  # network weights, O(1) outputs: the control variate is active
            torch.nn.init.normal_(p, std=1.5 / math.sqrt(p.shape[-1]))
    if name == "nvil":
        estimator.centre.fill_(0.37)
    return estimator.eval()


FIXED = [
    ("nvil", {"variance_normalization": False}),
    ("muprop", {}),
    ("rebar", {}),
    ("rebar", {"temperature": 0.3, "eta": 0.6}),
    ("relax", {}),
    ("relax", {"relaxed_f": True, "temperature": 2.0}),
]
IDS = [f"{n}{o}" for n, o in FIXED]


@pytest.mark.parametrize(("name", "options"), FIXED, ids=IDS)
@pytest.mark.parametrize("phi", [0.0, 1.0])
def test_unbiased_on_the_toy(name: str, options: dict, phi: float) -> None:
    m = 200_000
    q = Bernoulli(logits=torch.zeros(m, dtype=F64))
    estimator = _prepared(name, q, **options)
    streams = estimator.noise_streams
    g, exact = toy_estimates(estimator, phi, uniforms((streams, m), seed=9), target=0.2)
    assert_unbiased_with_power(Summary.of(g), torch.tensor([exact]).expand(m)[:1],
                               f"{name} {options} toy phi={phi}")


@pytest.mark.parametrize(("name", "options"), FIXED, ids=IDS)
def test_unbiased_with_a_cubic_on_two_bits(name: str, options: dict) -> None:
    m = 200_000
    theta = torch.tensor([0.8, -0.4], dtype=F64)
    leaf = theta.expand(m, 2).clone().requires_grad_(True)
    q = Independent(Bernoulli(logits=leaf, validate_args=False), 1)
    estimator = _prepared(name, q, **options)
    noise = uniforms(estimator.noise_shape(q, 1), seed=10)
    out = estimator(q, cubic_two_bits, 1, noise=noise)
    (g,) = torch.autograd.grad(out.loss.sum(), [leaf])
    one = theta.clone().requires_grad_(True)
    bits = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=F64)
    probability = Independent(Bernoulli(logits=one), 1).log_prob(bits).exp()
    (exact,) = torch.autograd.grad((probability * cubic_two_bits(bits)).sum(), [one])
    assert_unbiased_with_power(Summary.of(g), exact, f"{name} {options} cubic 2-D")


@pytest.mark.parametrize(("name", "options"), FIXED, ids=IDS)
@pytest.mark.parametrize("kind", ["quadratic", "cubic"])
def test_unbiased_on_one_categorical(name: str, options: dict, kind: str) -> None:
    m = 200_000
    theta = torch.tensor([0.3, -0.5, 0.9], dtype=F64)  # off log pi: unnormalized logits
    q = OneHotCategorical(logits=theta.expand(m, 3), validate_args=False)
    estimator = _prepared(name, q, **options)
    noise = uniforms(estimator.noise_shape(q, 1), seed=11)
    g = categorical_estimates(estimator, CATEGORICAL_F[kind], noise, theta)
    assert_unbiased_with_power(Summary.of(g), categorical_exact(CATEGORICAL_F[kind], theta),
                               f"{name} {options} categorical {kind}")


MODELS = {"categorical_vae": small_categorical_vae, "bernoulli_vae": small_bernoulli_vae}


@pytest.mark.parametrize(("name", "options"), FIXED, ids=IDS)
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("kl", ["analytic", "sampled"])
def test_unbiased_on_small_vaes(name: str, options: dict, model: str, kl: str) -> None:
    objective, x = MODELS[model](kl), binary_batch(3, 8)
    if estimators.get(name).needs_grad_f and not objective.differentiable_integrand:
        # A categorical log q at a relaxed point is that of its argmax: piecewise constant in
        # z, so a pathwise control variate through it is biased; the objective refuses.
        with pytest.raises(estimators.EstimatorError, match="not differentiable in z"):
            objective.check_bound(estimators.get(name))
        return
    exact = exact_gradients(objective, x)
    estimator = _prepared(name, objective.posterior(x), **options)
    torch.manual_seed(12)
    estimates = gradient_estimates(objective, x, estimator, 2, 250, 80)
    for role in ("params", "encoder", "decoder"):
        assert_unbiased_with_power(Summary.of(getattr(estimates, role)), exact[role],
                                   f"{name} {options} {model} kl={kl} {role}", 0.5)


def test_nvil_normalization_scales_the_estimate_by_the_frozen_deviation() -> None:
    """With v frozen at 4 (eval mode), NVIL's mean is the exact gradient / max(1, sqrt v):
    the direction is unbiased, the magnitude is not, and `unbiased` says so."""
    m = 200_000
    q = Bernoulli(logits=torch.zeros(m, dtype=F64))
    estimator = _prepared("nvil", q)
    assert estimator.unbiased is False
    assert estimators.get("nvil", variance_normalization=False).unbiased is True
    estimator.variance.fill_(4.0)
    g, exact = toy_estimates(estimator, 1.0, uniforms((1, m), seed=13), target=0.3)
    summary = Summary.of(g)
    summary.assert_matches(torch.tensor([exact / 2]), "nvil normalized by sqrt(4)")
    summary.assert_rejects(torch.tensor([exact]), "nvil normalized: not the unscaled gradient")


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
def test_nvil_normalization_scales_the_whole_objective_gradient(kl) -> None:
    """On a VAE whose KL is added outside f (kl="analytic"), the normalization divides the KL's
    encoder gradient too: from the same noise, the normalized encoder gradient is the
    unnormalized one / sqrt(v) exactly (same direction), as it is with the KL inside f."""
    torch.manual_seed(0)
    objective = objectives.load_objective("categorical_vae", input_dim=6, variables=2,
                                          categories=3, hidden=5, kl=kl).double()
    x = torch.bernoulli(torch.full((4, 6), 0.5, dtype=F64))
    q = objective.posterior(x)
    normalized = _prepared("nvil", q)
    plain = _prepared("nvil", q, variance_normalization=False)
    plain.load_state_dict(normalized.state_dict())
    normalized.variance.fill_(9.0)  # sqrt(v) = 3
    encoder = objective.parameter_groups()["encoder"]
    params = [p for n, p in objective.named_parameters() if n in encoder]

    def gradient(estimator) -> torch.Tensor:
        torch.manual_seed(5)
        out = objective.estimate(x, estimator, 3)
        grads = torch.autograd.grad(out.loss.sum(), params)
        return torch.cat([g.flatten() for g in grads])

    g_plain, g_normalized = gradient(plain), gradient(normalized)
    assert torch.allclose(g_normalized, g_plain / 3, rtol=1e-10, atol=1e-12)
    assert float(g_plain.norm()) > 1e-3  # a gradient, not zeros


def test_an_exact_term_keeps_its_value_and_takes_the_gradient_scale() -> None:
    from estibench.estimators import EstimatorOutput

    theta = torch.tensor(2.0, dtype=F64, requires_grad=True)
    out = EstimatorOutput(theta * 0, torch.zeros(()), torch.zeros(()), gradient_scale=0.25)
    added = out.plus(theta**2).minus(theta)
    assert float(added.loss) == pytest.approx(2.0) and float(added.value) == pytest.approx(2.0)
    (grad,) = torch.autograd.grad(added.loss, theta)
    assert float(grad) == pytest.approx(0.25 * (2 * 2.0 - 1))
    plain = EstimatorOutput(theta * 0, torch.zeros(()), torch.zeros(())).plus(theta**2)
    assert float(torch.autograd.grad(plain.loss, theta)[0]) == pytest.approx(4.0)


# Contract ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "evaluations"),
                         [("nvil", 3), ("muprop", 4), ("rebar", 9), ("relax", 3)])
def test_evaluations_declared_by_the_contract(name: str, evaluations: int) -> None:
    objective, x = small_categorical_vae(), binary_batch(2, 8)
    estimator = estimators.get(name).double()
    out = objective.estimate(x, estimator, 3)
    assert out.evaluations == evaluations
    torch.testing.assert_close(out.loss.detach(), out.value)  # a zero-valued control variate
    assert estimators.get("relax", relaxed_f=True).double()(
        objective.posterior(x), lambda z: objective.log_likelihood(x, z), 3).evaluations == 9


def test_refusals_name_what_is_supported() -> None:
    from torch.distributions import Normal

    normal = Normal(torch.zeros(2), torch.ones(2))
    for name in ("nvil", "muprop", "rebar", "relax"):
        with pytest.raises(estimators.UnsupportedDistributionError, match="OneHotCategorical"):
            estimators.get(name)(normal, lambda z: z, 1)
        assert estimators.get(name).needs_grad_f == (name != "nvil")
    assert estimators.get("rebar").noise_streams == 2
    with pytest.raises(estimators.EstimatorError, match="hidden"):
        estimators.get("nvil", hidden=0)
    with pytest.raises(estimators.EstimatorError, match="temperature"):
        estimators.get("rebar", temperature=-1.0)
    relax = estimators.get("relax")
    relax.prepare(Bernoulli(logits=torch.zeros(3, 4)))
    with pytest.raises(estimators.EstimatorError, match="built for 1 inputs"):
        relax.prepare(Independent(Bernoulli(logits=torch.zeros(3, 4)), 1))


def test_networks_are_not_built_inside_a_transform() -> None:
    from torch.func import grad

    q_logits = torch.zeros(3)

    def loss(logits):
        return estimators.get("nvil")(Bernoulli(logits=logits), lambda z: z, 1).loss.sum()

    with pytest.raises(estimators.EstimatorError, match="prepare"):
        grad(loss)(q_logits)


def test_measurement_freezes_nvil_running_moments() -> None:
    from estibench.benchmarks import metrics

    objective = objectives.get("bernoulli_toy", init=1.0)
    estimator = estimators.get("nvil")
    for _ in range(5):
        objective.estimate(None, estimator, 2)
    before = (float(estimator.centre), float(estimator.variance))
    assert before != (0.0, 1.0)  # training mode updates them
    metrics.gradient_stats(objective, estimator, None, replicas=16, num_samples=2)
    assert (float(estimator.centre), float(estimator.variance)) == before
    assert estimator.training
