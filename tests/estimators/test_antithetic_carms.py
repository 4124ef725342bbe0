"""CARMS: S jointly antithetic categorical samples (Dirichlet copula), the exact pair ratio,
and the reference code's clipped ratio as the named variant `carms-clipped`.

With S = 2 the estimate of one variable is a function of two uniforms, its copula uniform v
and the uniform that picks the category order, constant between the ends of the categories'
intervals (and their reflections 1 - x) and between the order boundaries m / M, so the
midpoint rule on that grid gives its exact mean and variance; the implementation is evaluated
at those points and compared with the exact gradient by enumeration. For S > 2 the calibrated
Monte Carlo test is used, and the pair pmf behind the ratio is checked against the frequencies
of the coupled samples themselves.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, Normal, OneHotCategorical

from estibench import estimators
from estibench.benchmarks import metrics
from estibench.benchmarks.harness.catalogue import unbiased_text
from estibench.benchmarks.suites.schema import EstimatorSpec
from estibench.estimators.antithetic import CARMS, end_pair_orders
from tests.estimator_oracles import exact_gradient, legendre_pieces, moments, replica_estimates
from tests.helpers import (
    Summary,
    assert_unbiased_with_power,
    binary_batch,
    bonferroni_bound,
    exact_gradients,
    gradient_estimates,
    small_bernoulli_vae,
    small_categorical_vae,
)

VALUES = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)  # c of the zoo's T2


def categoricals(logits: torch.Tensor):
    return Independent(OneHotCategorical(logits=logits, validate_args=False), 1)


def one_categorical(logits: torch.Tensor):
    return OneHotCategorical(logits=logits, validate_args=False)


def bernoullis(logits: torch.Tensor):
    return Independent(Bernoulli(logits=logits, validate_args=False), 1)


def cubic(z: torch.Tensor) -> torch.Tensor:
    """(sum_d c . z_d - 4.5)^3 / 10 over the variables of an Independent."""
    return ((z * VALUES).sum((-2, -1)) - 4.5) ** 3 / 10


def cubic_one(z: torch.Tensor) -> torch.Tensor:
    """The zoo's T2 cubic cost (c . y)^3 / 10 of one categorical."""
    return (z * VALUES).sum(-1) ** 3 / 10


def cubic_bits(b: torch.Tensor) -> torch.Tensor:
    return (b.sum(-1) - 0.499) ** 3


def random_logits(*shape: int, seed: int = 90) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


# RLOO, DisARM: the same estimate from the same noise --------------------------------------

@pytest.mark.parametrize("name", ["carms", "carms-clipped"])
@pytest.mark.parametrize("num_samples", [2, 4])
@pytest.mark.parametrize(("build_q", "f", "shape"), [(categoricals, cubic, (2, 3)),
                                                      (bernoullis, cubic_bits, (3,))],
                         ids=["categorical", "bernoulli"])
def test_independent_samples_with_ratio_one_are_rloo(name, num_samples, build_q, f, shape):
    """coupling="independent": the samples REINFORCE draws from the same noise, r = 1 (the
    clipped ratio of independent samples is 1 too), and the estimate is RLOO's."""
    theta = random_logits(*shape)
    torch.manual_seed(91)
    noise = estimators.noise.draw_noise(build_q(theta.expand(300, *shape)), num_samples)
    carms = estimators.get(name, coupling="independent")
    rloo = estimators.get("reinforce", baseline="loo")
    assert carms.unbiased
    a = replica_estimates(carms, build_q, theta, f, num_samples, noise=noise)
    b = replica_estimates(rloo, build_q, theta, f, num_samples, noise=noise)
    assert b.abs().max() > 0.1
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    q = build_q(theta.expand(300, *shape))
    out_a, out_b = carms(q, f, num_samples, noise=noise), rloo(q, f, num_samples, noise=noise)
    assert torch.equal(out_a.samples, out_b.samples)
    torch.testing.assert_close(out_a.value, out_b.value, rtol=1e-14, atol=0)


def test_two_samples_of_bernoullis_are_disarm_from_the_same_noise() -> None:
    """A Bernoulli is two categories with one order, and S = 2 couples u and 1 - u: the
    sample pair is DisARM's from the first uniform, and r = pi_0 pi_1 / min(pi_0, pi_1) =
    sigma(|phi|), DisARM's factor (the second sample's uniform is not read)."""
    phi = torch.tensor([0.4, -1.1, 2.0], dtype=torch.float64)
    torch.manual_seed(92)
    u = torch.rand(2, 1000, 3, dtype=torch.float64)
    carms = replica_estimates(estimators.get("carms"), bernoullis, phi, cubic_bits, 2, noise=u)
    disarm = replica_estimates(estimators.get("disarm"), bernoullis, phi, cubic_bits, 1,
                               noise=u[:1])
    assert disarm.abs().max() > 0.1
    torch.testing.assert_close(carms, disarm, rtol=1e-12, atol=1e-13)


# Exact moments with S = 2, by quadrature --------------------------------------------------

def two_sample_moments(name: str, probs: tuple[float, ...], f):
    """(mean, variance, exact gradient) per logit of `name` with S = 2 on one categorical,
    from the estimator at the midpoints of the cells of (v, order uniform)."""
    p = torch.tensor(probs, dtype=torch.float64)
    k = p.numel()
    orders, _ = end_pair_orders(k)
    ends = {float(x) for order in orders for x in p[order].cumsum(0)[:-1]}
    v, wv = legendre_pieces(sorted(ends | {1 - x for x in ends}), nodes=1)
    m = orders.shape[0]
    w, ww = legendre_pieces([i / m for i in range(1, m)], nodes=1)
    grid = torch.tensor(np.array(list(itertools.product(v, w))))
    weights = torch.tensor(np.array([a * b for a, b in itertools.product(wv, ww)]))
    noise = torch.rand(2, grid.shape[0], k, dtype=torch.float64)  # only [..., 0] is read
    noise[0, :, 0], noise[1, :, 0] = grid[:, 0], grid[:, 1]
    theta = p.log()
    grads = replica_estimates(estimators.get(name), one_categorical, theta, f, 2, noise=noise)
    mean, variance, _ = moments(grads, weights)
    return mean, variance, exact_gradient(one_categorical, theta, f)


SMALL = (0.001, 0.001, 0.998)  # two small probabilities: where clipping bites


@pytest.mark.parametrize("probs", [(0.2, 0.3, 0.5), SMALL, (0.1, 0.3, 0.6),
                                   (0.1, 0.05, 0.6, 0.25)],
                         ids=["T2", "small", "sum-rounds-above-1", "K4"])
def test_exact_ratio_is_unbiased_exactly(probs) -> None:
    f = cubic_one if len(probs) == 3 else (
        lambda z: (z * torch.tensor([1.0, 2, 4, -3], dtype=torch.float64)).sum(-1) ** 3 / 10)
    mean, variance, exact = two_sample_moments("carms", probs, f)
    assert exact.abs().min() > 1e-3
    assert torch.allclose(mean, exact, rtol=1e-10, atol=1e-14), (mean, exact)
    assert float(variance.min()) > 1e-6


def test_clipped_ratio_is_biased_at_small_probabilities() -> None:
    """The reference code's clip((pi_a pi_b + 1e-3) / (P(a, b) + 1e-3), 0.01, 10): its exact
    mean (quadrature) misses the enumerated gradient by more than 10% per logit at
    pi = (0.001, 0.001, 0.998); at T2's probabilities it misses by under 1%. With the same
    draws, the calibrated test rejects it at the small probabilities and passes the exact
    ratio."""
    mean, _, exact = two_sample_moments("carms-clipped", SMALL, cubic_one)
    relative = ((mean - exact) / exact).abs()
    assert float(relative.min()) > 0.10, relative
    t2_mean, _, t2_exact = two_sample_moments("carms-clipped", (0.2, 0.3, 0.5), cubic_one)
    assert float(((t2_mean - t2_exact) / t2_exact).abs().max()) < 0.01

    theta = torch.tensor(SMALL, dtype=torch.float64).log()
    torch.manual_seed(93)
    noise = torch.rand(2, 400_000, 3, dtype=torch.float64)
    summary = {name: Summary.of(replica_estimates(estimators.get(name), one_categorical,
                                                  theta, cubic_one, 2, noise=noise))
               for name in ("carms", "carms-clipped")}
    assert_unbiased_with_power(summary["carms"], exact, "carms at small probabilities")
    summary["carms-clipped"].assert_rejects(exact, "carms-clipped at small probabilities")
    assert not estimators.get("carms-clipped").unbiased


def t2_rloo_two_samples_variance(f) -> torch.Tensor:
    """Summed variance of RLOO with S = 2 on T2, enumerating the nine sample pairs (a, b):
    g = 1/2 [(f_a - f_b)(e_a - pi) + (f_b - f_a)(e_b - pi)]."""
    pi, corners = torch.tensor((0.2, 0.3, 0.5), dtype=torch.float64), torch.eye(3).double()
    values, weights = [], []
    for a, b in itertools.product(range(3), repeat=2):
        fa, fb = f(corners[a]), f(corners[b])
        values.append(0.5 * ((fa - fb) * (corners[a] - pi) + (fb - fa) * (corners[b] - pi)))
        weights.append(pi[a] * pi[b])
    return moments(torch.stack(values), torch.stack(weights))[1].sum()


@pytest.mark.parametrize("cost", ["linear", "quadratic", "cubic"])
def test_two_coupled_samples_beat_two_independent_ones_on_t2(cost: str) -> None:
    """The same two evaluations: below 0.75 of RLOO's summed variance with S = 2."""
    f = {"linear": lambda z: (z * VALUES).sum(-1),
         "quadratic": lambda z: ((z * VALUES).sum(-1) - 2) ** 2,
         "cubic": cubic_one}[cost]
    _, variance, _ = two_sample_moments("carms", (0.2, 0.3, 0.5), f)
    rloo = t2_rloo_two_samples_variance(f)
    assert float(variance.sum()) < 0.75 * float(rloo), (variance.sum(), rloo)


# S > 2: the calibrated test, and the pair pmf ---------------------------------------------

@pytest.mark.parametrize("num_samples", [2, 3, 4])
def test_unbiased_at_random_logits_with_a_cubic_f(num_samples: int) -> None:
    """2 variables x 3 categories, logits away from 0: the mean of 200000 estimates matches
    the enumerated gradient (Bonferroni z-test) and rejects a 25% bias."""
    theta = random_logits(2, 3, seed=94)
    exact = exact_gradient(categoricals, theta, cubic)
    assert exact.abs().min() > 1e-2
    torch.manual_seed(95)
    grads = replica_estimates(estimators.get("carms"), categoricals, theta, cubic,
                              num_samples, copies=200_000)
    assert_unbiased_with_power(Summary.of(grads), exact, f"carms S={num_samples}")


def test_unbiased_on_bernoullis_with_three_samples() -> None:
    phi = torch.tensor([0.7, -1.4, 0.2], dtype=torch.float64)
    exact = exact_gradient(bernoullis, phi, cubic_bits)
    torch.manual_seed(96)
    grads = replica_estimates(estimators.get("carms"), bernoullis, phi, cubic_bits, 3,
                              copies=200_000)
    assert_unbiased_with_power(Summary.of(grads), exact, "carms bernoulli S=3")


@pytest.mark.parametrize("num_samples", [2, 3, 4])
def test_each_sample_is_marginally_q_and_pairs_follow_the_pmf_of_the_ratio(num_samples):
    """From n = 200000 draws of the coupled indices (one variable, pi = (0.15, 0.35, 0.5)):
    each sample's category frequencies match pi, and the frequencies of (z_0, z_1) match the
    pmf P = pi_a pi_b / r the ratio was computed from (binomial z-tests, Bonferroni)."""
    pi = torch.tensor([0.15, 0.35, 0.5], dtype=torch.float64)
    n = 200_000
    torch.manual_seed(97)
    v = torch.rand(num_samples, n, 1, dtype=torch.float64)
    index, ratio = CARMS().coupled(pi.log().expand(n, 1, 3), v)
    index, ratio = index[..., 0], ratio[..., 0]  # (S, n), (S, S, n)
    observed, expected = [], []
    for i in range(num_samples):
        for a in range(3):
            observed.append(float((index[i] == a).double().mean()))
            expected.append(float(pi[a]))
    for a, b in itertools.product(range(3), repeat=2):
        hits = (index[0] == a) & (index[1] == b)
        observed.append(float(hits.double().mean()))
        rows = ratio[0, 1][hits]
        assert rows.numel() > 100 or a == b, (a, b)  # every pair of distinct categories
        pmf = float(pi[a] * pi[b] / rows[0]) if rows.numel() and rows[0] > 0 else 0.0
        expected.append(pmf)
    observed_t, expected_t = torch.tensor(observed), torch.tensor(expected)
    se = (expected_t * (1 - expected_t) / n).sqrt().clamp(min=1e-12)
    z = ((observed_t - expected_t) / se).abs()
    assert float(z.max()) <= bonferroni_bound(len(observed)), (observed, expected)
    assert math.isclose(sum(expected[-9:]), 1.0, rel_tol=1e-9)


# Through an objective, and under the engine's vmap ----------------------------------------

@pytest.mark.parametrize("kl", ["analytic", "sampled"])
def test_unbiased_on_the_small_categorical_vae(kl: str) -> None:
    objective, x = small_categorical_vae(kl), binary_batch(3, 8)
    exact = exact_gradients(objective, x)
    torch.manual_seed(98)
    estimates = gradient_estimates(objective, x, estimators.get("carms"), 2, 200, 60)
    for role in ("params", "encoder", "decoder"):
        assert_unbiased_with_power(Summary.of(getattr(estimates, role)), exact[role],
                                   f"categorical vae kl={kl} carms {role}")


@pytest.mark.parametrize(("factory", "num_samples"),
                         [(lambda: small_categorical_vae("sampled"), 3),
                          (lambda: small_bernoulli_vae("sampled"), 2)],
                         ids=["categorical", "bernoulli"])
def test_vectorized_statistics_match_the_loop_oracle(factory, num_samples) -> None:
    objective, x = factory(), binary_batch(3, 8)
    stats = {method: metrics.gradient_stats(objective, estimators.get("carms"), x,
                                            replicas=16, num_samples=num_samples,
                                            wrt="encoder", method=method, seed=5,
                                            chunk_size=8)
             for method in ("vectorized", "loop")}
    assert torch.allclose(stats["vectorized"].mean, stats["loop"].mean, rtol=1e-9, atol=1e-12)
    assert torch.allclose(stats["vectorized"].variance, stats["loop"].variance, rtol=1e-9,
                          atol=1e-12)


# The contract -----------------------------------------------------------------------------

FAMILIES = {  # family -> (q from logits, the logits' shape after the batch)
    "Bernoulli": (lambda logits: Bernoulli(logits=logits), ()),
    "Independent(Bernoulli)": (bernoullis, (3,)),
    "OneHotCategorical": (one_categorical, (4,)),
    "Independent(OneHotCategorical)": (categoricals, (2, 3)),
    "Categorical": (lambda logits: Categorical(logits=logits), (4,)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("num_samples", [2, 5])
def test_shapes_evaluations_and_the_surrogate(family, batch, num_samples) -> None:
    torch.manual_seed(99)
    build_q, shape = FAMILIES[family]
    logits = torch.randn((*batch, *shape), requires_grad=True)
    q = build_q(logits)
    weight = torch.tensor(0.7, requires_grad=True)

    def f(z: torch.Tensor) -> torch.Tensor:  # the category matters, one-hot or index
        flat = z.to(weight.dtype).reshape(z.shape[0], *batch, -1)
        return (weight * flat * torch.arange(1.0, flat.shape[-1] + 1)).sum(-1) ** 2 + weight

    out = estimators.get("carms")(q, f, num_samples)
    assert out.loss.shape == batch and out.value.shape == batch
    assert out.samples.shape == (num_samples, *batch, *q.event_shape)
    assert out.evaluations == num_samples
    torch.testing.assert_close(out.loss.detach(), out.value)
    out.loss.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert weight.grad is not None


def test_refusals_name_the_field_the_value_and_what_is_allowed() -> None:
    q = categoricals(torch.zeros(2, 2, 3))
    with pytest.raises(estimators.EstimatorError,
                       match=r"estimator 'carms' needs num_samples >= 2.*got 1"):
        estimators.get("carms")(q, cubic, 1)
    with pytest.raises(estimators.EstimatorError,
                       match=r"ratio must be one of exact, clipped, got 'clip'"):
        estimators.get("carms", ratio="clip")
    with pytest.raises(estimators.EstimatorError,
                       match=r"coupling must be one of dirichlet, independent, got 'iid'"):
        estimators.get("carms", coupling="iid")
    with pytest.raises(estimators.UnsupportedDistributionError,
                       match="estimator 'carms' does not apply to Normal"):
        estimators.get("carms")(Normal(torch.zeros(2), 1.0), lambda z: z, 2)
    with pytest.raises(estimators.EstimatorError, match="carms-clipped' is 'carms' with "
                                                        "ratio='clipped'"):
        estimators.get("carms-clipped", ratio="exact")


def test_the_clipped_variant_is_a_named_biased_alias() -> None:
    assert estimators.registry.resolve("carms-clipped") == ("carms", {"ratio": "clipped"})
    assert EstimatorSpec(name="carms-clipped").id == "carms-clipped"
    assert EstimatorSpec(name="carms", options={"ratio": "clipped"}).id == "carms-clipped"
    assert EstimatorSpec(name="carms").id == "carms"
    assert estimators.get("carms").unbiased and not estimators.get("carms-clipped").unbiased
    assert unbiased_text("carms", CARMS, estimators.get("carms")) == \
        "yes; no with ratio='clipped'"


def test_end_pair_orders_put_every_pair_of_categories_at_the_two_ends() -> None:
    for k in (2, 3, 5):
        orders, rank = end_pair_orders(k)
        assert orders.shape == (k * (k - 1) // 2, k)
        assert {frozenset((int(o[0]), int(o[-1]))) for o in orders} == \
            {frozenset(p) for p in itertools.combinations(range(k), 2)}
        assert all(sorted(o.tolist()) == list(range(k)) for o in orders)
        assert torch.equal(orders.gather(-1, rank), torch.arange(k).expand(len(orders), k))
