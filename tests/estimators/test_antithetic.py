"""ARM, DisARM and the U2G alias: coupled noise, exact moments by quadrature, unbiasedness.

Both estimates are deterministic functions of the uniforms u (one per coordinate), piecewise
polynomial of degree <= 1 in each u_d with breaks at sigmoid(-phi_d) and sigmoid(phi_d), so
Gauss-Legendre quadrature on the pieces gives their exact mean and variance. The test writes
the paper's formulas itself, integrates them, checks the mean against the enumerated exact
gradient, and checks the implementation against the formulas at the quadrature nodes; random
estimates from the engine's noise then match in mean (Bonferroni z-test with power) and in
variance (within 2%, with M derived from the exact fourth moment).
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from estibench import estimators
from estibench.benchmarks.suites.schema import EstimatorSpec
from tests.estimator_oracles import (
    check_variance,
    estimates_needed,
    exact_gradient,
    legendre_grid,
    moments,
    replica_estimates,
)
from tests.helpers import Summary, assert_unbiased_with_power

T = 0.499


def toy_f(b: torch.Tensor) -> torch.Tensor:
    """T1: (b - t)^2 of one Bernoulli."""
    return (b - T) ** 2


def cubic_f(b: torch.Tensor) -> torch.Tensor:
    """(b1 + b2 - t)^3 of two Bernoullis: couples the coordinates."""
    return (b.sum(-1) - T) ** 3


def one_bernoulli(logits: torch.Tensor):
    return Bernoulli(logits=logits[..., 0], validate_args=False)


def two_bernoullis(logits: torch.Tensor):
    return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def formula(name: str, f, build_q, phi: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The paper's estimate of d/dphi at uniforms u (n, D): b1 = 1[u > s(-phi)],
    b2 = 1[u < s(phi)]; ARM (f(b1) - f(b2)) (u - 1/2); DisARM 1/2 (f(b1) - f(b2)) (b1 - b2)
    s(|phi|)."""
    b1 = (u > torch.sigmoid(-phi)).double()
    b2 = (u < torch.sigmoid(phi)).double()
    if build_q is one_bernoulli:  # f of a scalar sample
        diff = (f(b1[:, 0]) - f(b2[:, 0]))[:, None]
    else:
        diff = (f(b1) - f(b2))[:, None]
    if name == "arm":
        return diff * (u - 0.5)
    return 0.5 * diff * (b1 - b2) * torch.sigmoid(phi.abs())


CASES = [  # (f, build_q, phi)
    (toy_f, one_bernoulli, (0.0,)),
    (toy_f, one_bernoulli, (1.0,)),
    (cubic_f, two_bernoullis, (0.0, 0.0)),
    (cubic_f, two_bernoullis, (1.0, 1.0)),
    (cubic_f, two_bernoullis, (0.0, 1.0)),
    (cubic_f, two_bernoullis, (0.5, -1.5)),  # a negative logit: sigma(|phi|) != sigma(phi)
]
IDS = ["T1-phi0", "T1-phi1", "cubic2d-phi00", "cubic2d-phi11", "cubic2d-phi01",
       "cubic2d-phi-neg"]


def quadrature(name: str, f, build_q, phi: torch.Tensor):
    """(nodes u (n, D), weights (n,), the formula's values, the estimator's values) at the
    Gauss-Legendre nodes, split at every coordinate's thresholds."""
    breaks = sorted({float(torch.sigmoid(s * p)) for p in phi for s in (-1, 1)})
    u, w = legendre_grid(breaks, phi.numel(), nodes=4)
    # The estimator at those uniforms: one batch element per node, one pair each.
    noise = u.reshape(1, u.shape[0], *([] if build_q is one_bernoulli else [phi.numel()]))
    values = replica_estimates(estimators.get(name), build_q, phi, f, 1, noise=noise)
    return u, w, formula(name, f, build_q, phi, u), values.reshape(u.shape[0], -1)


@pytest.mark.parametrize("name", ["arm", "disarm"])
@pytest.mark.parametrize(("f", "build_q", "phi"), CASES, ids=IDS)
def test_exact_moments_by_quadrature(name, f, build_q, phi) -> None:
    phi = torch.tensor(phi, dtype=torch.float64)
    u, w, by_formula, by_estimator = quadrature(name, f, build_q, phi)
    exact = exact_gradient(build_q, phi, f)
    mean, variance, _ = moments(by_formula, w)
    assert torch.allclose(mean, exact.reshape(-1), rtol=1e-10, atol=1e-13), (mean, exact)
    assert torch.allclose(by_estimator, by_formula, rtol=1e-12, atol=1e-14)
    if name == "disarm" and build_q is one_bernoulli and float(phi[0]) == 0:
        assert float(variance.max()) < 1e-24  # deterministic at phi = 0 on T1


@pytest.mark.parametrize("name", ["arm", "disarm"])
@pytest.mark.parametrize(("f", "build_q", "phi"), CASES, ids=IDS)
def test_random_estimates_match_the_exact_moments(name, f, build_q, phi) -> None:
    phi = torch.tensor(phi, dtype=torch.float64)
    _, w, by_formula, _ = quadrature(name, f, build_q, phi)
    _, variance, fourth = moments(by_formula, w)
    spread = [(float(v), float(k)) for v, k in zip(variance, fourth, strict=True) if v > 1e-20]
    m = max([estimates_needed(v, k, 0.02) for v, k in spread], default=20_000)
    assert m <= 400_000
    torch.manual_seed(40)
    grads = replica_estimates(estimators.get(name), build_q, phi, f, 1, copies=m)
    grads = grads.reshape(m, -1)
    exact = exact_gradient(build_q, phi, f).reshape(-1)
    assert_unbiased_with_power(Summary.of(grads), exact, f"{name} phi={phi.tolist()}")
    for d, (v, k) in enumerate(zip(variance, fourth, strict=True)):
        if v > 1e-20:
            check_variance(grads[:, d], float(v), float(k), 0.02, f"{name} coordinate {d}")
        else:
            assert float(grads[:, d].std()) < 1e-12  # DisARM at phi = 0: one value


def test_disarm_is_deterministic_at_phi_zero_on_t1() -> None:
    torch.manual_seed(41)
    phi = torch.zeros(1, dtype=torch.float64)
    grads = replica_estimates(estimators.get("disarm"), one_bernoulli, phi, toy_f, 1,
                              copies=1000)
    exact = exact_gradient(one_bernoulli, phi, toy_f)
    assert torch.allclose(grads, exact.expand_as(grads), rtol=1e-12, atol=0)


def rloo_pair_variance(phi: float, f) -> float:
    """Variance of RLOO with S = 2 on one Bernoulli, by enumerating the four sample pairs:
    g = 1/2 [(f(b) - f(b')) (b - s) + (f(b') - f(b)) (b' - s)]."""
    s = torch.sigmoid(torch.tensor(phi, dtype=torch.float64))
    values, weights = [], []
    for b in (0.0, 1.0):
        for c in (0.0, 1.0):
            fb, fc = f(torch.tensor(b)), f(torch.tensor(c))
            values.append(0.5 * ((fb - fc) * (b - s) + (fc - fb) * (c - s)))
            weights.append((s if b else 1 - s) * (s if c else 1 - s))
    return float(moments(torch.stack(values)[:, None], torch.stack(weights))[1][0])


@pytest.mark.parametrize(("f", "build_q", "phi"), CASES, ids=IDS)
def test_disarm_variance_at_most_arms_and_rloo(f, build_q, phi) -> None:
    """Rao-Blackwell, per coordinate: Var(DisARM) <= Var(ARM); on T1 at phi = 1 also below
    RLOO with the same two evaluations."""
    phi = torch.tensor(phi, dtype=torch.float64)
    var = {}
    for name in ("arm", "disarm"):
        _, w, by_formula, _ = quadrature(name, f, build_q, phi)
        var[name] = moments(by_formula, w)[1]
    assert bool((var["disarm"] <= var["arm"] + 1e-18).all()), var
    if build_q is one_bernoulli and float(phi[0]) == 1.0:
        rloo = rloo_pair_variance(1.0, f)
        assert float(var["disarm"][0]) < rloo, (var, rloo)


def test_the_pair_is_reinforces_sample_and_its_antithetic_copy() -> None:
    """Common random numbers: b1 from noise u is exactly REINFORCE's sample from u, and b2 is
    the engine's sample from 1 - u, i.e. 1[u < sigmoid(phi)]."""
    torch.manual_seed(42)
    phi = torch.randn(50, 3)
    q = Independent(Bernoulli(logits=phi), 1)
    u = estimators.noise.draw_noise(q, 4)
    pair = estimators.get("disarm")(q, lambda z: z.sum(-1), 4, noise=u).samples
    reinforce = estimators.get("reinforce")(q, lambda z: z.sum(-1), 4, noise=u).samples
    assert torch.equal(pair[:4], reinforce)
    assert torch.equal(pair[4:], (u < torch.sigmoid(phi)).float())


def test_u2g_is_disarm() -> None:
    torch.manual_seed(43)
    phi = torch.tensor([0.3, -1.2], dtype=torch.float64)
    noise = torch.rand(3, 500, 2, dtype=torch.float64)
    a = replica_estimates(estimators.get("u2g"), two_bernoullis, phi, cubic_f, 3, noise=noise)
    b = replica_estimates(estimators.get("disarm"), two_bernoullis, phi, cubic_f, 3,
                          noise=noise)
    assert torch.equal(a, b)
    assert type(estimators.get("u2g")) is estimators.DisARM
    assert EstimatorSpec(name="u2g").id == "disarm"
    assert estimators.registry.resolve("u2g") == ("disarm", {})


def test_pairs_count_two_evaluations_each() -> None:
    q = Independent(Bernoulli(logits=torch.zeros(5, 3)), 1)
    for name in ("arm", "disarm"):
        out = estimators.get(name)(q, lambda z: z.sum(-1), 4)
        assert out.evaluations == 8
        assert out.samples.shape == (8, 5, 3)


def test_arm_refuses_categorical_latents_and_disarm_takes_them() -> None:
    """Categorical ARM (ARSM) is not implemented; DisARM and its alias apply by stick breaking
    (tests/estimators/test_antithetic_categorical.py)."""
    q = Independent(OneHotCategorical(logits=torch.zeros(2, 4, 3)), 1)
    with pytest.raises(estimators.UnsupportedDistributionError,
                       match="estimator 'arm'.*supports Bernoulli.*categorical latents are not "
                             "supported"):
        estimators.get("arm")(q, lambda z: z.sum((-2, -1)))
    for name in ("disarm", "u2g"):
        assert estimators.get(name).applies_to(q)
        assert estimators.get(name)(q, lambda z: z.sum((-2, -1))).evaluations == 2
