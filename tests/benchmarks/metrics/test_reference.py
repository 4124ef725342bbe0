"""Bias against a reference gradient (`metrics.reference`), where there is no exact one: the
reference agrees with the exact gradient within its own error, the bias it reports matches the
bias against the exact gradient, and the unbiasedness test keeps its level with the reference's
error folded in (and would not without it).

The problems have an exact gradient (by enumeration) so that every check compares the
reference path with the exact one on the same estimates.
"""

from __future__ import annotations

import math

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import gradient_stats, reference_gradient
from estibench.benchmarks.metrics.engine import Target, compute_exact_gradient
from estibench.benchmarks.metrics.reference import ReferenceGradient


def categorical_toy(dims: int = 1) -> objectives.Objective:
    """Four categories at uneven probabilities, a cubic f of the category's value."""
    return objectives.load_objective("categorical_toy", probs=(0.1, 0.2, 0.3, 0.4),
                                     values=(1.0, 2.0, 4.0, -1.0), dims=dims)


def exact_of(objective: objectives.Objective, wrt: str = "distribution") -> torch.Tensor:
    target = Target.of(objective, None, wrt)
    return compute_exact_gradient(objective, None, target).to(torch.float64)


def rloo() -> estimators.Estimator:
    return estimators.get("reinforce", baseline="loo")


def test_the_reference_agrees_with_the_exact_gradient_within_its_own_error():
    objective = categorical_toy()
    reference = reference_gradient(objective, rloo(), None, replicas=4096, num_samples=8)
    exact = exact_of(objective)
    assert reference.replicas == 4096 - 1024  # a quarter fixes the directions
    error = float(((reference.mean - exact) ** 2).sum())
    # E error = noise_floor; chi-square-like with 4 coordinates: 6 x its mean is far in the tail
    assert error < 6 * reference.noise_floor
    assert reference.noise_floor > 0
    # the directions: unit vectors, the first along the gradient (up to the first part's noise)
    norms = reference.directions.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms))
    cosine = float(reference.directions[0] @ exact / exact.norm())
    assert cosine > 0.95


def test_the_bias_against_a_reference_matches_the_bias_against_the_exact_gradient():
    objective = categorical_toy()
    biased = estimators.get("gumbel_softmax", temperature=1.0)
    reference = reference_gradient(objective, rloo(), None, replicas=8192, num_samples=8, seed=3)
    against_exact = gradient_stats(objective, biased, None, replicas=4096, seed=1)
    against_reference = gradient_stats(objective, biased, None, replicas=4096, seed=1,
                                       reference=reference)
    assert against_exact.bias_against == "exact"
    assert against_reference.bias_against == (
        f"reference: reinforce, S = 8, M = {reference.replicas}")
    assert against_exact.p_value < 1e-6 and against_reference.p_value < 1e-6
    # both estimate the same squared bias; their difference is within the combined errors
    se = math.hypot(against_exact.squared_bias_se, against_reference.squared_bias_se)
    assert against_exact.squared_bias > 10 * against_exact.squared_bias_se
    assert abs(against_reference.squared_bias - against_exact.squared_bias) < 4 * se
    # the floor counts both Monte Carlo errors
    own = against_reference.total_variance / against_reference.replicas
    assert against_reference.noise_floor == pytest.approx(own + reference.noise_floor)


def test_a_reference_of_the_wrong_size_is_refused():
    objective = categorical_toy()
    reference = reference_gradient(objective, rloo(), None, replicas=64, num_samples=2)
    bigger = categorical_toy(dims=2)
    with pytest.raises(ValueError, match="reference gradient has 4 coordinates; wrt="):
        gradient_stats(bigger, rloo(), None, replicas=16, num_samples=2, reference=reference)


def _without_its_error(reference: ReferenceGradient) -> ReferenceGradient:
    """The same reference claiming to be exact (its error not folded in)."""
    return ReferenceGradient(reference.estimator, reference.num_samples, reference.replicas,
                             reference.mean, reference.variance * 0, reference.directions,
                             reference.projection_variance * 0)


def test_the_bias_test_against_a_reference_keeps_its_level():
    """Size over seeds: an unbiased estimator (REINFORCE without baseline, M = 512) against a
    small reference (RLOO, S = 2, M = 256 of which 192 give the value): the reference's error is
    of the order of the estimator's, so folding it in matters. Over 1000 seeds the rejections
    at alpha = 0.01 must stay at most 20 (2%, as for the exact gradient's test; at a true 1%
    exceeding it has probability 0.2%) and at alpha = 0.05 at most 65; the same references
    taken as exact must reject far more often (the check has power). Measured with these seeds:
    6 (0.01) and 41 (0.05) of 1000 folded in; 112 of 1000 at 0.01 taken as exact."""
    objective = categorical_toy()
    measured = estimators.get("reinforce")
    seeds = range(1000)
    folded = folded_5 = naive = 0
    for seed in seeds:
        reference = reference_gradient(objective, rloo(), None, replicas=256, num_samples=2,
                                       seed=10_000 + seed, chunk_size=256)
        stats = gradient_stats(objective, measured, None, replicas=512, seed=seed,
                               chunk_size=512, reference=reference)
        ignored = gradient_stats(objective, measured, None, replicas=512, seed=seed,
                                 chunk_size=512, reference=_without_its_error(reference))
        folded += stats.p_value < 0.01
        folded_5 += stats.p_value < 0.05
        naive += ignored.p_value < 0.01
    assert folded <= 20, f"{folded} of {len(seeds)} rejections at alpha = 0.01"
    assert folded_5 <= 65, f"{folded_5} of {len(seeds)} rejections at alpha = 0.05"
    assert naive >= 50, f"taken as exact, only {naive} of {len(seeds)} rejections"
