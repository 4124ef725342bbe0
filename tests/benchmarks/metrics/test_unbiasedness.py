"""The unbiasedness test of `gradient_stats` (`estibench.benchmarks.metrics.unbiasedness`): its size
on unbiased estimators where single estimates are far from normal, its power on a biased one, and
its edge cases.

Calibration: for each case, SEEDS independent blocks of M = 128 replicas (the smallest M the
harness uses, replicas="auto" starts there) of an unbiased estimator; the test at alpha = 0.01
must reject at most 2% of them. The blocks are cut from one long stream of estimates
(`replica_estimates`, the same vectorized code `gradient_stats` runs; a separate test checks
that `gradient_stats` gives the same p-value on the same noise), so 1000 blocks cost one
vectorized pass. With 1000 blocks the bound is 20 rejections; at a true rate of exactly 1%
(10 expected) exceeding it has probability 0.2%, and the noise is fixed by the seeds, so the
outcome is reproducible. Measured (this file's seeds): gaussian_toy 1.3% (the per-coordinate
z-test it replaces: 7.0%), rare category 0.8%, trained VAE 1.4% (distribution) and 0.3%
(encoder).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import common_noise, gradient_stats
from estibench.benchmarks.metrics.chisquare import chi2_sf
from estibench.benchmarks.metrics.engine import replica_estimates
from estibench.benchmarks.metrics.unbiasedness import UnbiasednessTest, hall_p_value, student_t_sf2

ALPHA = 0.01
REPLICAS = 128
SEEDS = 1000
MAX_RATE = 0.02


def binary_batch(batch: int, dim: int = 16, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, dim, generator=g) < 0.4).float()


def blocks(objective, estimator, x, num_samples: int = 1, wrt: str = "distribution",
           seeds: int = SEEDS, per_pass: int = 250):
    """(estimates (M, P), exact (P,)) for `seeds` independent blocks of REPLICAS."""
    for start in range(0, seeds, per_pass):
        n = min(per_pass, seeds - start)
        noise = common_noise(objective, x, n * REPLICAS, num_samples, seed=start)
        rows, exact = replica_estimates(objective, estimator, x, noise, num_samples, wrt)
        assert exact is not None
        yield from ((block, exact) for block in rows.split(REPLICAS))


def new_p_value(block: Tensor, exact: Tensor) -> float:
    test = UnbiasednessTest(exact, torch.finfo(torch.float32).eps)
    test.update(block)
    return test.p_value()


def old_p_value(block: Tensor, exact: Tensor) -> float:
    """The per-coordinate z-test this file's test replaced: chi2 = sum z_p^2 over the
    coordinates with spread, against chi-square(number of those coordinates)."""
    mean, std = block.mean(0), block.std(0)
    keep = std > 0
    z = (mean - exact)[keep] / (std[keep] / math.sqrt(block.shape[0]))
    return chi2_sf(float((z**2).sum()), int(keep.sum()))


def rejection_rate(p_values: list[float]) -> float:
    assert len(p_values) == SEEDS and not any(math.isnan(p) for p in p_values)
    return sum(p < ALPHA for p in p_values) / len(p_values)


def rare_category_vae() -> tuple[objectives.Objective, Tensor]:
    """A 2 x 4 categorical VAE whose fourth category has probability ~5e-4 on every example:
    in a block of 128 replicas it is mostly never drawn."""
    torch.manual_seed(0)
    obj = objectives.get("categorical_vae", input_dim=16, variables=2, categories=4, hidden=8)
    with torch.no_grad():
        obj.encoder[-1].bias.view(2, 4)[:, 3] -= 7.0
    x = binary_batch(4)
    with torch.no_grad():
        rare = obj.distribution(obj.posterior_params(x)).base_dist.probs[..., 3]
    assert float(rare.max()) < 1e-3
    return obj, x


def trained_vae() -> tuple[objectives.Objective, Tensor]:
    """A small categorical VAE after 100 Adam steps on the exact ELBO gradient (enumeration):
    a trained checkpoint with confident, near-deterministic posteriors."""
    torch.manual_seed(0)
    obj = objectives.get("categorical_vae", input_dim=16, variables=2, categories=4, hidden=8)
    x = binary_batch(64, seed=1)
    exact = estimators.get("exact")
    optimizer = torch.optim.Adam(obj.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        (-obj.estimate(x, exact, 1).loss.mean()).backward()
        optimizer.step()
    batch = x[:4]
    with torch.no_grad():
        probs = obj.distribution(obj.posterior_params(batch)).base_dist.probs
    assert float(probs.min()) < 1e-3  # some categories are rare after training
    return obj, batch


# ------------------------------------------------------------------------------ calibration


def test_size_on_the_heavy_tailed_gaussian_toy_and_the_old_z_test_fails_it() -> None:
    """Score-function gradients of -E[z^2], z ~ N(1, 1): skewness about -5 and -11 for the two
    coordinates, kurtosis in the hundreds."""
    obj = objectives.get("gaussian_toy")
    est = estimators.get("reinforce")
    new, old = [], []
    for block, exact in blocks(obj, est, None):
        new.append(new_p_value(block, exact))
        old.append(old_p_value(block, exact))
    assert rejection_rate(new) <= MAX_RATE, rejection_rate(new)
    assert rejection_rate(old) > 2 * MAX_RATE, rejection_rate(old)  # the bug this replaces


def test_the_issue_case_many_coordinates_rejected_by_the_old_test_always() -> None:
    """gaussian_toy with 1000 dims at M = 128: the per-coordinate chi-square test rejected
    every seed; the new test rejects at most one of 20 (expected 0.2)."""
    obj = objectives.get("gaussian_toy", dims=1000)
    pairs = list(blocks(obj, estimators.get("reinforce"), None, seeds=20, per_pass=20))
    assert all(old_p_value(b, e) < ALPHA for b, e in pairs)
    assert sum(new_p_value(b, e) < ALPHA for b, e in pairs) <= 1


def test_size_on_a_rare_category() -> None:
    obj, x = rare_category_vae()
    p = [new_p_value(b, e) for b, e in blocks(obj, estimators.get("reinforce"), x)]
    assert rejection_rate(p) <= MAX_RATE, rejection_rate(p)


@pytest.mark.parametrize("wrt", ["distribution", "encoder"])
def test_size_on_a_trained_vae(wrt: str) -> None:
    obj, x = trained_vae()
    est = estimators.get("reinforce", baseline="loo")
    p = [new_p_value(b, e) for b, e in blocks(obj, est, x, num_samples=2, wrt=wrt)]
    assert rejection_rate(p) <= MAX_RATE, rejection_rate(p)


# ------------------------------------------------------------------------------------ power


def test_gumbel_softmax_bias_at_temperature_one_is_detected() -> None:
    torch.manual_seed(0)
    obj = objectives.get("categorical_vae", input_dim=16, variables=2, categories=4, hidden=8)
    x = binary_batch(4)
    est = estimators.get("gumbel_softmax", temperature=1.0)
    p = [new_p_value(b, e) for b, e in blocks(obj, est, x, seeds=50)]
    assert all(v < ALPHA for v in p), max(p)
    s = gradient_stats(obj, est, x, replicas=REPLICAS, seed=7)
    assert s.p_value is not None and s.p_value < ALPHA
    assert s.squared_bias is not None and s.squared_bias_se is not None
    assert s.squared_bias > 3 * s.squared_bias_se  # the bias is also plain in the numbers


# ------------------------------------------------------------------------- the parts of it


def test_gradient_stats_reports_the_test_on_its_own_estimates() -> None:
    obj, x = trained_vae()
    est = estimators.get("reinforce", baseline="loo")
    noise = common_noise(obj, x, REPLICAS, 2, seed=3)
    rows, exact = replica_estimates(obj, est, x, noise, 2, "encoder")
    s = gradient_stats(obj, est, x, replicas=REPLICAS, num_samples=2, wrt="encoder",
                       noise=noise, chunk_size=50)
    assert exact is not None and s.p_value == pytest.approx(new_p_value(rows, exact), rel=1e-6)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 15, 127])
def test_student_t_tail_matches_the_integrated_density(dof: int) -> None:
    # P(|T| > t) = 1 - 2 int_0^t c (1 + u^2 / dof)^(-(dof + 1) / 2) du, by Gauss-Legendre.
    c = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(dof * math.pi)
    nodes, weights = np.polynomial.legendre.leggauss(200)
    for t in (0.3, 1.0, 2.5, 6.0):
        u = (nodes + 1) * t / 2
        inside = 2 * float((weights * t / 2 * c * (1 + u**2 / dof) ** (-(dof + 1) / 2)).sum())
        assert student_t_sf2(t, dof) == pytest.approx(1 - inside, rel=1e-9, abs=1e-12)
    assert student_t_sf2(0.0, dof) == 1.0 and student_t_sf2(math.inf, dof) == 0.0
    with pytest.raises(ValueError, match="dof"):
        student_t_sf2(1.0, 0)


def test_hall_statistic_is_the_t_test_without_skewness() -> None:
    # A sample with zero third central moment: Hall's T reduces to the t statistic.
    y = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=torch.float64) + 0.7
    t = 0.7 / (float(y.std()) / math.sqrt(5))
    assert hall_p_value(y) == pytest.approx(student_t_sf2(t, 4), rel=1e-12)
    assert math.isnan(hall_p_value(y[:2]))


def test_zero_spread_equal_up_to_rounding_passes_and_a_real_error_is_not_tested() -> None:
    """Every replica the same value: equal to exact up to rounding passes; off by more, the
    statistic is undefined and the test says "not tested" (NaN), not "biased"."""
    exact = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    eps = torch.finfo(torch.float32).eps
    for offset in (1e-7, 1e-2):
        test = UnbiasednessTest(exact, eps)
        test.update((exact * (1 + offset)).expand(REPLICAS, 3))
        p = test.p_value()
        assert (p == 1.0) if offset < 1e-6 else math.isnan(p), (offset, p)


def test_an_unbiased_estimator_whose_replicas_all_agree_is_not_called_biased() -> None:
    """DisARM on a Bernoulli near p = 1/2: its two draws differ unless u falls in a sliver of
    width |1 - 2p|, so 32 replicas are usually all one value, off the exact gradient by that
    sliver's share; with no spread to weigh it the test must not say biased."""
    from estibench import estimators
    from estibench.benchmarks import metrics, objectives

    toy = objectives.get("bernoulli_toy")
    with torch.no_grad():
        toy.phi.fill_(0.01)  # p = 0.5025: the sliver is 0.5% of u
    stats = metrics.gradient_stats(toy, estimators.get("disarm"), None, replicas=32,
                                   num_samples=1, seed=0)
    assert stats.total_variance == 0.0 and stats.bias_norm > 0  # all equal, off exact
    assert math.isnan(stats.p_value)
