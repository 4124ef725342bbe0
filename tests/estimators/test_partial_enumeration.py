"""IndeCateR and the unordered set estimator: exact moments by enumerating their outcomes.

IndeCateR with S = 1 is a function of the one sample x; the unordered set estimator with one
set is a function of the ordered draw (s_1..s_k) (Gumbel-top-k). Each outcome is forced through
the engine's noise map, so the implementation's exact mean and variance come from the finite
outcome distribution; the test writes the papers' formulas itself and compares per outcome, the
means with the enumerated exact gradient, and random estimates with a calibrated z-test.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from estibench import estimators
from tests.estimator_oracles import (
    bernoulli_noise,
    check_variance,
    estimates_needed,
    exact_gradient,
    moments,
    replica_estimates,
)
from tests.helpers import Summary, assert_unbiased_with_power

PI = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
C = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
T2_F = {  # T2: f of y = c . one-hot
    "linear": lambda y: y,
    "quadratic": lambda y: (y - 2) ** 2,
    "cubic": lambda y: y**3 / 10,
}


def categorical(logits: torch.Tensor):
    return OneHotCategorical(logits=logits, validate_args=False)


def t2(fn):
    return lambda z: fn((z * C).sum(-1))


def forced_gumbel_noise(logits: torch.Tensor, order: list[list[int]]) -> torch.Tensor:
    """Uniforms (1, n, K) whose Gumbel-perturbed logits rank order[i] first, in that order,
    for batch element i (the rest below)."""
    n, k = len(order), logits.shape[-1]
    keys = torch.full((n, k), -5.0, dtype=torch.float64)
    for i, members in enumerate(order):
        for rank, value in enumerate(members):
            keys[i, value] = 10.0 - rank
    gumbel = keys - logits
    return torch.exp(-torch.exp(-gumbel))[None]


# IndeCateR ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fname", list(T2_F))
def test_indecater_is_exact_with_one_variable(fname: str) -> None:
    """D = 1: the estimate is J(pi) (f(e_k))_k for every sample (variance exactly 0)."""
    torch.manual_seed(60)
    theta = PI.log()
    grads = replica_estimates(estimators.get("indecater"), categorical, theta, t2(T2_F[fname]),
                              2, copies=200)
    exact = exact_gradient(categorical, theta, t2(T2_F[fname]))
    fk = T2_F[fname](C)
    assert torch.allclose(exact, (torch.diag(PI) - torch.outer(PI, PI)) @ fk, rtol=1e-12)
    assert torch.allclose(grads, exact.expand_as(grads), rtol=1e-12, atol=1e-14)
    for phi in (0.0, 1.0):  # T1, a Bernoulli: D = 1 too
        leaf = torch.tensor([phi], dtype=torch.float64)
        toy = replica_estimates(estimators.get("indecater"), lambda p: Bernoulli(logits=p[..., 0]),
                                leaf, lambda b: (b - 0.499) ** 2, 1, copies=100)
        s = 1 / (1 + math.exp(-phi))
        assert torch.allclose(toy, torch.full_like(toy, s * (1 - s) * (1 - 2 * 0.499)),
                              rtol=1e-12)


def two_bernoullis(logits):
    return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def outcomes_of_two_bits(phi: torch.Tensor):
    """The four outcomes x (4, 2) and their probabilities."""
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=2)), dtype=torch.float64)
    s = torch.sigmoid(phi)
    return x, torch.where(x > 0.5, s, 1 - s).prod(-1)


@pytest.mark.parametrize(("power", "phi"), [(2, (0.0, 1.0)), (3, (0.0, 0.0)), (3, (1.0, 1.0))])
def test_indecater_on_two_bernoullis_beats_reinforce(power: int, phi) -> None:
    """T6 (power 2, phi = (0, 1)) and a cubic: IndeCateR's S = 1 estimate per outcome is
    s_d (1 - s_d) [f(x, x_d <- 1) - f(x, x_d <- 0)], REINFORCE's f(x) (x - s); both means are
    the exact gradient, and IndeCateR's variance is lower in every coordinate."""
    phi = torch.tensor(phi, dtype=torch.float64)

    def f(b):
        return (b.sum(-1) - 0.499) ** power

    x, prob = outcomes_of_two_bits(phi)
    s = torch.sigmoid(phi)
    formula = torch.stack([
        s[d] * (1 - s[d]) * (f(x.index_fill(1, torch.tensor([d]), 1.0))
                             - f(x.index_fill(1, torch.tensor([d]), 0.0)))
        for d in range(2)], -1)
    reinforce = f(x)[:, None] * (x - s)
    noise = bernoulli_noise(phi.expand(4, 2), x)[None]
    implementation = replica_estimates(estimators.get("indecater"), two_bernoullis, phi, f, 1,
                                       noise=noise)
    assert torch.allclose(implementation, formula, rtol=1e-12, atol=1e-14)
    exact = exact_gradient(two_bernoullis, phi, f)
    mean, var, fourth = moments(formula, prob)
    rf_mean, rf_var, _ = moments(reinforce, prob)
    assert torch.allclose(mean, exact, rtol=1e-12) and torch.allclose(rf_mean, exact, rtol=1e-12)
    assert bool((var < rf_var).all()), (var, rf_var)
    m = max(100_000, *[estimates_needed(float(v), float(k), 0.02)
                       for v, k in zip(var, fourth, strict=True)])
    assert m <= 400_000
    torch.manual_seed(61)
    grads = replica_estimates(estimators.get("indecater"), two_bernoullis, phi, f, 1, copies=m)
    assert_unbiased_with_power(Summary.of(grads), exact, f"indecater power {power}")
    for d in range(2):
        check_variance(grads[:, d], float(var[d]), float(fourth[d]), 0.02, f"indecater {d}")


def test_indecater_evaluations_are_s_d_k() -> None:
    q = Independent(OneHotCategorical(logits=torch.zeros(5, 4, 3)), 1)
    out = estimators.get("indecater")(q, lambda z: z[..., 0].sum(-1), 2)
    assert out.evaluations == 2 * 4 * 3
    assert out.samples.shape == (24, 5, 4, 3)


# Unordered set -----------------------------------------------------------------------------

def pair_formula(pi, f, s1: int, s2: int, baseline: bool) -> torch.Tensor:
    """The k = 2 estimate for the ordered draw (s1, s2), written out: p(S) =
    p1 p2 / (1 - p1) + p2 p1 / (1 - p2), R(S, s1) = p2 / (1 - p1) / p(S); with the baseline
    B(s1) = p1 f1 + p2 R2(s1, s2) f2 with R2(s1, s2) = (1 - p1) / p2."""
    p1, p2, f1, f2 = pi[s1], pi[s2], f[s1], f[s2]
    p_set = p1 * p2 / (1 - p1) + p2 * p1 / (1 - p2)
    r1, r2 = p2 / (1 - p1) / p_set, p1 / (1 - p2) / p_set
    b1 = p1 * f1 + (1 - p1) * f2 if baseline else 0.0
    b2 = p2 * f2 + (1 - p2) * f1 if baseline else 0.0
    e = torch.eye(len(pi), dtype=torch.float64)
    return r1 * p1 * (f1 - b1) * (e[s1] - pi) + r2 * p2 * (f2 - b2) * (e[s2] - pi)


def pair_moments(fname: str, baseline: bool):
    """(formula per ordered pair, implementation per ordered pair, probabilities)."""
    pairs = list(itertools.permutations(range(3), 2))
    fk = T2_F[fname](C)
    formula = torch.stack([pair_formula(PI, fk, a, b, baseline) for a, b in pairs])
    prob = torch.stack([PI[a] * PI[b] / (1 - PI[a]) for a, b in pairs])
    theta = PI.log()
    noise = forced_gumbel_noise(theta.expand(len(pairs), 3), [list(p) for p in pairs])
    estimator = estimators.get("unordered_set", k=2, baseline=baseline)
    implementation = replica_estimates(estimator, categorical, theta, t2(T2_F[fname]), 1,
                                       noise=noise)
    return formula, implementation, prob


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("fname", list(T2_F))
def test_unordered_set_pairs_on_t2(fname: str, baseline: bool) -> None:
    formula, implementation, prob = pair_moments(fname, baseline)
    assert torch.allclose(implementation, formula, rtol=1e-10, atol=1e-12)
    mean, _, _ = moments(formula, prob)
    exact = exact_gradient(categorical, PI.log(), t2(T2_F[fname]))
    assert torch.allclose(mean, exact, rtol=1e-10, atol=1e-12)


def test_the_built_in_baseline_can_raise_the_variance() -> None:
    """Sum of variances on T2, k = 2, from the enumerated ordered pairs: the baseline lowers it
    for linear f and raises it for quadratic and cubic f."""
    total = {(f, b): float(moments(*pair_moments(f, b)[::2])[1].sum())
             for f in T2_F for b in (True, False)}
    assert total[("linear", True)] < total[("linear", False)]
    assert total[("quadratic", True)] > total[("quadratic", False)]
    assert total[("cubic", True)] > total[("cubic", False)]


@pytest.mark.parametrize("baseline", [True, False])
def test_unordered_set_with_k_equal_to_k_values_is_exact(baseline: bool) -> None:
    torch.manual_seed(62)
    estimator = estimators.get("unordered_set", k=3, baseline=baseline)
    grads = replica_estimates(estimator, categorical, PI.log(), t2(T2_F["cubic"]), 1,
                              copies=50)
    exact = exact_gradient(categorical, PI.log(), t2(T2_F["cubic"]))
    assert torch.allclose(grads, exact.expand_as(grads), rtol=1e-10, atol=1e-12)
    for phi in (0.0, 1.0):  # T1: the set is both values
        leaf = torch.tensor([phi], dtype=torch.float64)

        def toy_f(b):
            return (b - 0.499) ** 2

        def one_bit(p):
            return Bernoulli(logits=p[..., 0])

        toy = replica_estimates(estimators.get("unordered_set", k=2, baseline=baseline),
                                one_bit, leaf, toy_f, 1, copies=50)
        assert torch.allclose(toy, exact_gradient(one_bit, leaf, toy_f).expand_as(toy),
                              rtol=1e-10)


@pytest.mark.parametrize(("k", "baseline"), [(2, True), (3, True), (3, False), (4, True)])
def test_unordered_set_is_unbiased_with_five_values(k: int, baseline: bool) -> None:
    theta = torch.tensor([0.3, -1.0, 0.8, 0.0, -0.4], dtype=torch.float64)
    values = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5], dtype=torch.float64)

    def f(z):
        return ((z * values).sum(-1) - 0.5) ** 3

    torch.manual_seed(63)
    estimator = estimators.get("unordered_set", k=k, baseline=baseline)
    grads = replica_estimates(estimator, categorical, theta, f, 2, copies=20_000)
    exact = exact_gradient(categorical, theta, f)
    assert_unbiased_with_power(Summary.of(grads), exact, f"unordered_set k={k} {baseline}")


def test_unordered_set_first_member_is_reinforces_sample() -> None:
    torch.manual_seed(64)
    q = categorical(torch.randn(30, 5))
    u = estimators.noise.draw_noise(q, 2)
    out = estimators.get("unordered_set", k=3)(q, lambda z: z[..., 0], 2, noise=u)
    reinforce = estimators.get("reinforce")(q, lambda z: z[..., 0], 2, noise=u)
    assert out.evaluations == 6
    assert torch.equal(out.samples[:2], reinforce.samples)  # member 1 of both sets


def test_unordered_set_refusals_name_the_limits() -> None:
    with pytest.raises(estimators.EstimatorError, match=r"k must be an integer in \[1, 6\]"):
        estimators.get("unordered_set", k=7)
    with pytest.raises(estimators.EstimatorError, match="baseline must be true or false"):
        estimators.get("unordered_set", baseline="yes")
    with pytest.raises(estimators.UnsupportedDistributionError,
                       match="1 variables of 3 values.*at least k = 4 values"):
        estimators.get("unordered_set", k=4)(categorical(torch.zeros(2, 3)), lambda z: z[..., 0])
    many = Independent(OneHotCategorical(logits=torch.zeros(2, 4, 3)), 1)
    with pytest.raises(estimators.UnsupportedDistributionError, match="4 variables"):
        estimators.get("unordered_set")(many, lambda z: z[..., 0, 0])


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("fname", list(T2_F))
def test_random_unordered_set_estimates_match_the_enumerated_variance(fname, baseline) -> None:
    """Random Gumbel-top-2 draws: per-coordinate variance within 2% of the enumerated one."""
    formula, _, prob = pair_moments(fname, baseline)
    _, variance, fourth = moments(formula, prob)
    m = max(estimates_needed(float(v), float(k), 0.02) for v, k in zip(variance, fourth,
                                                                        strict=True))
    assert m <= 400_000
    torch.manual_seed(65)
    estimator = estimators.get("unordered_set", k=2, baseline=baseline)
    grads = replica_estimates(estimator, categorical, PI.log(), t2(T2_F[fname]), 1, copies=m)
    for d in range(3):
        check_variance(grads[:, d], float(variance[d]), float(fourth[d]), 0.02,
                       f"unordered_set {fname} baseline={baseline} coordinate {d}")


def test_set_log_prob_equals_the_sum_over_drawing_orders() -> None:
    """log P(the members, in any order, drawn first without replacement, some other values
    excluded) against the sum over the orders of prod_t p_t / (mass not yet drawn nor
    excluded), in plain Python floats, for sets of 0 to 4 members of a 6-category distribution
    with 0 or 1 values excluded (the 1-member fast path included)."""
    from estibench.estimators.partial_enumeration import set_log_prob
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64) * 2, -1)
    for m in range(5):
        for members in itertools.combinations(range(6), m):
            others = [i for i in range(6) if i not in members]
            for excluded in ([], others[:1]):
                available = 1.0 - sum(float(probs[i]) for i in excluded)
                expected = 0.0
                for order in itertools.permutations(members):
                    p, left = 1.0, available
                    for i in order:
                        p *= float(probs[i]) / left
                        left -= float(probs[i])
                    expected += p
                rest = available - sum(float(probs[i]) for i in members)
                got = set_log_prob(probs[list(members)].log(),
                                   torch.tensor(rest, dtype=torch.float64).log())
                assert math.isclose(float(got.exp()), expected, rel_tol=1e-12), (members, got)


@pytest.mark.parametrize("baseline", [True, False])
def test_unordered_set_pair_closed_form_equals_the_general_path(baseline: bool) -> None:
    """k = 2 takes the closed form; the general path (set probabilities over orderings,
    leave-one-out and leave-two-out ratios) must give the same weights and signals, for
    probabilities from near uniform to a member near 1."""
    est = estimators.get("unordered_set", k=2, baseline=baseline)
    g = torch.Generator().manual_seed(6)
    for scale in (0.1, 2.0, 12.0):
        log_p = torch.log_softmax(torch.randn(5, 3, 7, generator=g, dtype=torch.float64)
                                  * scale, -1)
        members = torch.stack([torch.randperm(7, generator=g)[:2] for _ in range(15)])
        members = members.reshape(5, 3, 2)
        log_pk, log_rest = log_p.gather(-1, members), est._rest(log_p, members)
        fz = torch.randn(5, 3, 2, generator=g, dtype=torch.float64)
        fast = est.pair_weights_and_signals(log_pk, fz)
        general = est.weights_and_signals(log_pk, log_rest, fz)
        for got, expected in zip(fast, general, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
