"""The straight-through family: ReinMax (= ZGR at tau = 1), Gumbel-Rao, gapped ST, decoupled
ST-Gumbel.

Every reference value is derived here: by enumerating the sample D (the estimators that depend on
D alone) or by quadrature over the uniform u that the Gumbel / logistic noise comes from.
Problems: T1, the Bernoulli toy f(b) = (b - t)^2 at phi = 1; T2, one categorical with
pi = (0.2, 0.3, 0.5) and f linear, quadratic and cubic in the one-hot sample.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate
from torch.distributions import Bernoulli, OneHotCategorical

from estibench import estimators
from estibench.benchmarks.suites.schema import EstimatorSpec
from estibench.estimators import EstimatorError
from estibench.estimators.noise import hard_sample, split_streams, uniform
from tests.helpers import Summary

T = 0.499  # the Bernoulli toy's target
PI = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
C = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
T2 = {  # f of a (relaxed) one-hot y, shape (..., 3) -> (...)
    "linear": lambda y: (y * C).sum(-1),
    "quadratic": lambda y: ((y * C).sum(-1) - 2) ** 2,
    "cubic": lambda y: (y * C).sum(-1) ** 3 / 10,
}
TINY = torch.finfo(torch.float64).tiny


def forcing_noise(k: int, categories: int, streams: int = 1) -> torch.Tensor:
    """Uniforms (streams, 1, categories) whose stream 0 makes category k the Gumbel argmax."""
    u = torch.full((streams, 1, categories), 0.5, dtype=torch.float64)
    u[0] = 1e-300
    u[0, 0, k] = 1 - 1e-16
    return u


def estimate_at(estimator, logits: torch.Tensor, f, k: int) -> torch.Tensor:
    """The estimator's gradient w.r.t. the logits of a one-hot categorical, given sample e_k."""
    leaf = logits.clone().requires_grad_(True)
    q = OneHotCategorical(logits=leaf)
    noise = forcing_noise(k, logits.shape[-1], estimator.noise_streams).reshape(-1, 1, 3)
    out = estimator(q.expand((1,)), f, 1, noise=noise)
    assert torch.equal(out.samples[0, 0], torch.eye(3, dtype=torch.float64)[k])
    (g,) = torch.autograd.grad(out.loss.sum(), [leaf])
    return g


def enumerated_mean(estimator, f) -> torch.Tensor:
    """E_D[estimate | D] = sum_k pi_k estimate(e_k) at theta = log pi."""
    return sum(PI[k] * estimate_at(estimator, PI.log(), f, k) for k in range(3))


def exact_t2(f) -> torch.Tensor:
    theta = PI.log().clone().requires_grad_(True)
    (g,) = torch.autograd.grad((torch.softmax(theta, -1) * f(torch.eye(3, dtype=torch.float64)))
                               .sum(), [theta])
    return g


# --------------------------------------------------------------------- ReinMax, ZGR, ST


def test_reinmax_at_temperature_one_is_zgr_sample_by_sample() -> None:
    """The backward matrices of reinmax(tau=1), of the alias zgr, and of (ST + DARN) / 2 =
    [J(pi) + (D - pi)(D - pi)^T] / 2 agree on random (pi, D) with 2 to 6 categories."""
    for categories in range(2, 7):
        g = torch.Generator().manual_seed(categories)
        logits = 2 * torch.randn(40, categories, generator=g, dtype=torch.float64)
        noise = uniform((1, 40, categories), torch.float64, generator=g)
        matrices = {}
        for name in ("reinmax", "zgr", "straight_through"):
            estimator = estimators.get(name)
            columns = []
            for k in range(categories):
                leaf = logits.clone().requires_grad_(True)
                out = estimator(OneHotCategorical(logits=leaf), lambda z, k=k: z[..., k], 1,
                                noise=noise)
                columns.append(torch.autograd.grad(out.loss.sum(), [leaf])[0])
            matrices[name] = torch.stack(columns, -1)  # (B, theta_j, k) = M^T e_k
            sample = out.samples[0]
        pi = torch.softmax(logits, -1)
        jac = torch.diag_embed(pi) - pi[:, :, None] * pi[:, None, :]
        darn = (sample - pi)[:, :, None] * (sample - pi)[:, None, :]
        assert torch.allclose(matrices["straight_through"], jac, atol=1e-12)
        assert torch.allclose(matrices["reinmax"], (jac + darn) / 2, atol=1e-12)
        assert torch.equal(matrices["zgr"], matrices["reinmax"])


def test_zgr_is_an_alias_of_reinmax_at_temperature_one() -> None:
    zgr = estimators.get("zgr")
    assert isinstance(zgr, estimators.ReinMax) and zgr.temperature == 1.0
    assert EstimatorSpec(name="zgr").id == "reinmax"  # results show the canonical name
    with pytest.raises(EstimatorError, match="temperature=1.0"):
        estimators.get("zgr", temperature=1.3)


def test_exactness_on_one_categorical_against_enumeration() -> None:
    """T2: straight-through is exact for linear f, ReinMax at tau = 1 for linear and quadratic
    f; neither for cubic f, nor ST for quadratic f, nor ReinMax at tau = 1.3 for any of them."""
    st, reinmax = estimators.get("straight_through"), estimators.get("reinmax")
    warm = estimators.get("reinmax", temperature=1.3)
    for kind, f in T2.items():
        exact = exact_t2(f)
        for name, estimator in (("st", st), ("reinmax", reinmax), ("reinmax-1.3", warm)):
            bias = float((enumerated_mean(estimator, f) - exact).norm())
            expect_exact = (name == "reinmax" and kind != "cubic") or (
                name == "st" and kind == "linear")
            if expect_exact:
                assert bias < 1e-12, (name, kind, bias)
            else:
                assert bias > 0.02, (name, kind, bias)  # |exact| ~ 0.7-1.8 here


def test_reinmax_cubic_bias_is_measured_against_enumeration() -> None:
    exact = exact_t2(T2["cubic"])
    mean = enumerated_mean(estimators.get("reinmax"), T2["cubic"])
    # By hand: g(e_k) = 3 (c_k)^2 c / 10; the mean of [J(pi) + (D - pi)(D - pi)^T] g / 2.
    jac = torch.diag(PI) - PI[:, None] * PI[None, :]
    by_hand = sum(PI[k] * ((jac + torch.outer(torch.eye(3)[k].double() - PI,
                                               torch.eye(3)[k].double() - PI)) / 2)
                  @ (3 * C[k] ** 2 * C / 10) for k in range(3))
    assert torch.allclose(mean, by_hand, atol=1e-12)
    assert float((mean - exact).norm()) > 0.1


def bernoulli_estimate(estimator, phi: float, b: int, copies: int = 1) -> torch.Tensor:
    """d/dphi of the estimator's surrogate for f = (b - t)^2 given the sample b."""
    leaf = torch.full((copies,), phi, dtype=torch.float64, requires_grad=True)
    u = torch.full((estimator.noise_streams, copies), 0.5, dtype=torch.float64)
    u[0] = 1 - 1e-16 if b else 1e-300
    out = estimator(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 1, noise=u)
    assert torch.all(out.samples == b)
    return torch.autograd.grad(out.loss.sum(), [leaf])[0]


def test_reinmax_on_the_bernoulli_toy_at_phi_one() -> None:
    """T1 at phi = 1 by enumeration over b: ReinMax(1) = ZGR is exact ((b - t)^2 is quadratic);
    ReinMax(1.3) is not; ZGR's binary form f'(b) (b (1 - s) + (1 - b) s) / 2 holds per b."""
    phi, s = 1.0, torch.sigmoid(torch.tensor(1.0, dtype=torch.float64))
    exact = s * (1 - s) * ((1 - T) ** 2 - T**2)
    for tau, is_exact in ((1.0, True), (1.3, False)):
        est = estimators.get("reinmax", temperature=tau)
        per_b = [bernoulli_estimate(est, phi, b) for b in (0, 1)]
        mean = (1 - s) * per_b[0] + s * per_b[1]
        assert (abs(float(mean - exact)) < 1e-12) == is_exact, (tau, float(mean), float(exact))
        if tau == 1.0:
            for b in (0, 1):
                zgr = 2 * (b - T) * (b * (1 - s) + (1 - b) * s) / 2
                assert torch.allclose(per_b[b], zgr, atol=1e-14)


# ------------------------------------------------------------------------------ gapped ST


@pytest.mark.parametrize("phi", [1.0, -1.0])
def test_gapped_st_equals_st_sample_by_sample_when_the_logit_is_the_gap(phi: float) -> None:
    gst, st = estimators.get("gapped_st", gap=1.0), estimators.get("straight_through")
    noise = uniform((4, 200), torch.float64, generator=torch.Generator().manual_seed(3))
    grads = []
    for est in (gst, st):
        leaf = torch.full((200,), phi, dtype=torch.float64, requires_grad=True)
        out = est(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 4, noise=noise)
        grads.append(torch.autograd.grad(out.loss.sum(), [leaf])[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-14)
    # ... and not at another logit, where the perturbation changes the backward.
    other = [bernoulli_estimate(e, 0.3, 0) for e in (gst, st)]
    assert abs(float(other[0] - other[1])) > 1e-3


def test_gapped_st_is_biased_for_linear_f() -> None:
    """Unlike ST, GST is biased even for linear f (enumeration over D on T2)."""
    bias = enumerated_mean(estimators.get("gapped_st"), T2["linear"]) - exact_t2(T2["linear"])
    assert float(bias.norm()) > 0.05


def test_gapped_st_checks_its_gap() -> None:
    with pytest.raises(EstimatorError, match="gap must be a finite number >= 0, got -1"):
        estimators.get("gapped_st", gap=-1.0)


# ---------------------------------------------------------------------------- Gumbel-Rao


def st_gumbel_mean_by_quadrature(phi: float, tau: float, tau_f: float = 1.0,
                                 decoupled: bool = False) -> float:
    """E_u[d/dphi soft(u) * f'(b(u))] for L = logit(u): ST-Gumbel's backward is
    sigmoid'((phi + L) / tau) / tau (decoupled: sigmoid'(phi / tau + L) / tau) and the sample is
    b = [phi / tau_f + L > 0], i.e. u > sigmoid(-phi / tau_f); split there."""
    def integrand(u: float, b: int) -> float:
        logit = math.log(u) - math.log1p(-u)
        y = phi / tau + logit if decoupled else (phi + logit) / tau
        s = 1 / (1 + math.exp(-y))
        return s * (1 - s) / tau * 2 * (b - T)
    cut = 1 / (1 + math.exp(phi / tau_f))
    lo = integrate.quad(integrand, 0, cut, args=(0,), epsabs=1e-13, limit=200)[0]
    hi = integrate.quad(integrand, cut, 1, args=(1,), epsabs=1e-13, limit=200)[0]
    return lo + hi


def gr_estimates(phi: float, copies: int, seed: int, **options) -> torch.Tensor:
    est = estimators.get("gumbel_rao", **options)
    g = torch.Generator().manual_seed(seed)
    noise = uniform((est.noise_streams, copies), torch.float64, generator=g)
    leaf = torch.full((copies,), phi, dtype=torch.float64, requires_grad=True)
    out = est(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 1, noise=noise)
    return torch.autograd.grad(out.loss.sum(), [leaf])[0]


@pytest.mark.parametrize("mc", [1, 3, 16])
def test_gumbel_rao_mean_equals_st_gumbel_mean_for_every_k(mc: int) -> None:
    """T1 at phi = 1, tau = 0.5: the mean of GR-MCK ("stopped") is ST-Gumbel's mean (by
    quadrature over u), and the test rejects the exact gradient, which GR does not estimate."""
    phi, tau = 1.0, 0.5
    target = st_gumbel_mean_by_quadrature(phi, tau)
    summary = Summary.of(gr_estimates(phi, 100_000, mc, temperature=tau, mc=mc))
    summary.assert_matches(torch.tensor([target]), f"gumbel_rao mc={mc}")
    s = 1 / (1 + math.exp(-phi))
    summary.assert_rejects(torch.tensor([s * (1 - s) * (1 - 2 * T)]), "exact gradient")


def test_gumbel_rao_variance_falls_with_k_and_one_draw_is_st_gumbel() -> None:
    phi, tau, copies = 1.0, 0.5, 20_000
    var = {mc: float(gr_estimates(phi, copies, 7, temperature=tau, mc=mc).var())
           for mc in (1, 4, 16)}
    assert var[16] < var[4] < var[1], var
    # K = 1 reuses the sample's own Gumbel noise: ST-Gumbel sample by sample.
    noise = uniform((copies,), torch.float64, generator=torch.Generator().manual_seed(8))
    grads = []
    for est in (estimators.get("gumbel_rao", temperature=tau, mc=1),
                estimators.get("st_gumbel", temperature=tau)):
        leaf = torch.full((copies,), phi, dtype=torch.float64, requires_grad=True)
        out = est(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 1, noise=noise[None])
        grads.append(torch.autograd.grad(out.loss.sum(), [leaf])[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["stopped", "total"])
def test_the_perturbed_logits_always_argmax_to_the_sample(mode: str) -> None:
    est = estimators.get("gumbel_rao", mc=8, conditional_gradient=mode)
    g = torch.Generator().manual_seed(9)
    for logits in (torch.tensor([0.7, 0.25, 0.05]).log(), torch.randn(50, 6, generator=g) * 3):
        q = OneHotCategorical(logits=logits.double().expand(500, *logits.shape))
        noise = uniform(est.noise_shape(q, 2), torch.float64, generator=g)
        hard = hard_sample(q, split_streams(noise, 8)[0])
        y = est.perturbed(q, hard, noise)
        assert torch.equal(y.argmax(-1), hard.argmax(-1).expand(8, *hard.shape[:-1]))
    phi = torch.randn(5000, generator=g, dtype=torch.float64) * 3
    q = Bernoulli(logits=phi)
    noise = uniform(est.noise_shape(q, 1), torch.float64, generator=g)
    hard = hard_sample(q, noise[:1])
    y = est.perturbed(q, hard, noise)
    assert torch.equal((y > 0).double(), hard.expand_as(y))


def conditional_backward_by_quadrature(phi: float, tau: float, b: int) -> float:
    """E[sigmoid'(y / tau) / tau | b] for y = phi + logit(u), u uniform on b's side of
    sigmoid(-phi): the K = infinity Gumbel-Rao backward given b."""
    cut = 1 / (1 + math.exp(phi))
    lo, hi = (cut, 1.0) if b else (0.0, cut)

    def integrand(u: float) -> float:
        y = phi + math.log(u) - math.log1p(-u)
        s = 1 / (1 + math.exp(-y / tau))
        return s * (1 - s) / tau
    # The integrand peaks at the threshold (y = 0): give quad the point.
    return integrate.quad(integrand, lo, hi, epsabs=1e-13, limit=400)[0] / (hi - lo)


def test_gumbel_rao_tends_to_zgr_as_k_grows_and_the_temperature_falls() -> None:
    """Given b, the K = infinity backward (quadrature) approaches ZGR's (b (1 - s) + (1 - b) s)
    / 2 as tau falls; with K = 4000 draws the estimates are that value within their noise, and
    their spread around it is a tenth of that with K = 40."""
    phi = 1.0
    s = 1 / (1 + math.exp(-phi))
    for b in (0, 1):
        zgr = (b * (1 - s) + (1 - b) * s) / 2
        gaps = [abs(conditional_backward_by_quadrature(phi, tau, b) - zgr)
                for tau in (0.3, 0.1, 0.02)]
        assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.02 * zgr, gaps
        est = estimators.get("gumbel_rao", temperature=0.1, mc=4000)
        per_copy = bernoulli_estimate_random(est, phi, b, copies=20) / (2 * (b - T))
        target = conditional_backward_by_quadrature(phi, 0.1, b)
        Summary.of(per_copy).assert_matches(torch.full((20,), target), "gr K=4000")
        few = estimators.get("gumbel_rao", temperature=0.1, mc=40)
        spread = float(bernoulli_estimate_random(few, phi, b, copies=20).std() / abs(2 * (b - T)))
        assert float(per_copy.std()) < spread / 5  # 100 x the draws: ~1/10 of the spread


def bernoulli_estimate_random(est, phi: float, b: int, copies: int) -> torch.Tensor:
    """Per-copy estimates given sample b, the conditional draws from random streams."""
    u = uniform((est.noise_streams, copies), torch.float64,
                         generator=torch.Generator().manual_seed(11))
    u[0] = 1 - 1e-16 if b else 1e-300
    leaf = torch.full((copies,), phi, dtype=torch.float64, requires_grad=True)
    out = est(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 1, noise=u)
    assert torch.all(out.samples == b)
    return torch.autograd.grad(out.loss.sum(), [leaf])[0]


def test_gumbel_rao_on_a_categorical_tends_to_zgr() -> None:
    """T2's pi, f linear, K = 2000 draws, the mean of 50 copies given each D: the distance to
    ZGR's estimate falls from tau = 0.2 to tau = 0.05, where it is below 0.015 (|ZGR| ~ 0.5)."""
    f = T2["linear"]
    zgr = [estimate_at(estimators.get("zgr"), PI.log(), f, k) for k in range(3)]
    for k in range(3):
        gaps = {}
        for tau in (0.2, 0.05):
            est = estimators.get("gumbel_rao", temperature=tau, mc=2000)
            summary = Summary.of(gr_categorical(est, k, f, copies=50))
            gaps[tau] = float((summary.mean - zgr[k]).abs().max())
            noise = float(summary.se.max())
        assert gaps[0.05] < gaps[0.2] and gaps[0.05] < 0.015 + 4 * noise, (k, gaps, noise)


def gr_categorical(est, k: int, f, copies: int) -> torch.Tensor:
    """Gumbel-Rao estimates (copies, 3) at theta = log pi given the sample e_k."""
    u = uniform((est.noise_streams, copies, 3), torch.float64,
                         generator=torch.Generator().manual_seed(12 + k))
    u[0] = forcing_noise(k, 3)[0]
    leaf = PI.log().expand(copies, 3).clone().requires_grad_(True)
    out = est(OneHotCategorical(logits=leaf), f, 1, noise=u)
    return torch.autograd.grad(out.loss.sum(), [leaf])[0]


def test_the_total_conditional_gradient_estimates_another_quantity() -> None:
    """'total' differentiates through the conditional Gumbels: its mean is
    sum_b P(b) f'(b) d/dphi E[sigmoid(y / tau) | b] (quadrature, differentiated by autograd
    through the inverse CDF on Gauss-Legendre nodes), which is not ST-Gumbel's mean."""
    phi, tau = 1.0, 0.5
    nodes, weights = legendre(400)
    leaf = torch.tensor(phi, dtype=torch.float64, requires_grad=True)
    total = 0.0
    for b in (0, 1):
        s = torch.sigmoid(leaf)
        lo, width = (1 - s, s) if b else (torch.zeros(()), 1 - s)
        u = lo + width * nodes
        y = leaf + torch.log(u) - torch.log1p(-u)
        conditional = (weights * torch.sigmoid(y / tau)).sum()
        (d,) = torch.autograd.grad(conditional, [leaf])
        p_b = float(s.detach()) if b else 1 - float(s.detach())
        total += p_b * 2 * (b - T) * float(d)
    summary = Summary.of(gr_estimates(phi, 100_000, 13, temperature=tau, mc=2,
                                      conditional_gradient="total"))
    summary.assert_matches(torch.tensor([total]), "gumbel_rao total")
    summary.assert_rejects(torch.tensor([st_gumbel_mean_by_quadrature(phi, tau)]), "ST-GS mean")


def legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on (0, 1)."""
    import numpy as np
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.tensor((x + 1) / 2), torch.tensor(w / 2)


def test_gumbel_rao_checks_its_options() -> None:
    with pytest.raises(EstimatorError, match="mc must be an integer >= 1, got 0"):
        estimators.get("gumbel_rao", mc=0)
    with pytest.raises(EstimatorError, match="conditional_gradient must be one of stopped, total"):
        estimators.get("gumbel_rao", conditional_gradient="partial")


# -------------------------------------------------------------------- decoupled ST-Gumbel


@pytest.mark.parametrize("tau_f, tau_b", [(1.0, 0.5), (0.5, 1.0)])
def test_decoupled_st_gumbel_mean_by_quadrature(tau_f: float, tau_b: float) -> None:
    phi, copies = 1.0, 200_000
    est = estimators.get("st_gumbel", forward_temperature=tau_f, backward_temperature=tau_b)
    assert est.samples_from_q == (tau_f == 1.0)
    g = torch.Generator().manual_seed(14)
    noise = uniform((1, copies), torch.float64, generator=g)
    leaf = torch.full((copies,), phi, dtype=torch.float64, requires_grad=True)
    out = est(Bernoulli(logits=leaf), lambda z: (z - T) ** 2, 1, noise=noise)
    grads = torch.autograd.grad(out.loss.sum(), [leaf])[0]
    target = st_gumbel_mean_by_quadrature(phi, tau_b, tau_f, decoupled=True)
    Summary.of(grads).assert_matches(torch.tensor([target]), f"decoupled {tau_f}, {tau_b}")
    # The forward samples are Bernoulli(sigmoid(phi / tau_f)): q itself only for tau_f = 1.
    freq = Summary.of(out.samples.reshape(-1, 1))
    freq.assert_matches(torch.sigmoid(torch.tensor([phi / tau_f])), "forward frequency")
    if tau_f != 1.0:
        freq.assert_rejects(torch.sigmoid(torch.tensor([phi])), "q's probability")


def test_decoupled_st_gumbel_at_temperature_one_is_st_gumbel_and_default_is_unchanged() -> None:
    noise = uniform((3, 50, 4), torch.float64, generator=torch.Generator().manual_seed(15))
    logits = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(16))
    grads = []
    for options in ({}, {"forward_temperature": 1.0, "backward_temperature": 1.0}):
        est = estimators.get("st_gumbel", **options)
        assert est.samples_from_q
        leaf = logits.clone().requires_grad_(True)
        out = est(OneHotCategorical(logits=leaf), lambda z: (z * torch.arange(4.0).double()
                                                            ).sum(-1) ** 2, 3, noise=noise)
        grads.append(torch.autograd.grad(out.loss.sum(), [leaf])[0])
    assert torch.allclose(grads[0], grads[1], atol=1e-12)
    assert estimators.get("st_gumbel", forward_temperature=0.5).samples_from_q is False


def test_a_temperature_schedule_anneals_gumbel_temperatures_only() -> None:
    """ReinMax's and gapped ST's tau are fixed hyperparameters (zgr stays ReinMax at 1); the
    Gumbel-Rao and ST-Gumbel temperatures follow the suite's schedule."""
    from estibench.benchmarks.harness.temperature import temperature_of

    schedule = {"initial": 1.0, "minimum": 0.5, "rate": 1e-3}
    for name, follows in (("zgr", False), ("gapped_st", False), ("gumbel_rao", True),
                          ("st_gumbel", True)):
        expected = schedule if follows else 1.0
        assert temperature_of(estimators.get(name), {}, schedule) == expected, name


def test_the_conditional_gumbels_stay_finite_when_the_sample_ties_another_category():
    """The Gumbel-Rao conditional draw given D: when another category's T equals T_D (a tie,
    or D off the argmin by rounding: seen once in 449 estimates on a trained categorical VAE),
    its E is 0 and log E = -inf; picking D's entries by multiplying with the one-hot d turned
    that into -inf x 0 = NaN for the whole row."""
    from estibench.estimators.straight_through import categorical_conditional

    theta = torch.tensor([[0.3, -1.2, 0.7]], requires_grad=True)
    d = torch.tensor([[0.0, 0.0, 1.0]])
    log_e_own = theta.detach().clone()  # log T_i = log E_i - theta_i = 0 for every i: a tie
    log_e = torch.stack([log_e_own, torch.randn(1, 3), torch.randn(1, 3)])
    y = categorical_conditional(theta, d, log_e)
    assert torch.isfinite(y).all()
    assert float(y[0, 0, 2]) >= float(y[0, 0].max())  # D stays a maximum (here, tied)
    (grad,) = torch.autograd.grad(y.sum(), theta)
    assert torch.isfinite(grad).all()
