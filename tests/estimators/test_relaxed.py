"""The relaxed estimators are biased, measurably, and Gumbel-Softmax's bias shrinks with the
temperature. The harness must show their bias: these tests make sure there is bias to show."""

from __future__ import annotations

import math

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from tests.helpers import (
    Summary,
    binary_batch,
    bonferroni_bound,
    exact_gradients,
    gradient_estimates,
    small_categorical_vae,
    toy_gradient_estimates,
)

RELAXED = ["gumbel_softmax", "st_gumbel", "straight_through"]
LARGE = 3.0  # "significantly biased": beyond 3x the Bonferroni bound in standard errors


def toy():
    # At the default (target 0.499, logit 0) the toy's gradient is -5e-4 and the relaxed biases
    # are below the resolution of 10^6 samples (and straight-through is exactly unbiased at
    # p = 1/2 on this quadratic); away from it they are large.
    return objectives.get("bernoulli_toy", target=0.45, init=0.5).double()


def _temperature(name: str, temperature: float) -> dict:
    return {} if name == "straight_through" else {"temperature": temperature}


@pytest.mark.parametrize("name", RELAXED)
def test_relaxed_estimators_are_biased_on_the_bernoulli_toy(name: str) -> None:
    torch.manual_seed(50)
    estimator = estimators.get(name, **_temperature(name, 1.0))
    grads, exact = toy_gradient_estimates(toy(), estimator, 1, copies=1_000_000)
    z = Summary.of(grads).z(exact).abs().max()
    assert float(z) > LARGE * bonferroni_bound(1), f"{name}: bias z = {float(z):.1f}"


@pytest.mark.parametrize("name", RELAXED)
def test_relaxed_estimators_are_biased_on_a_categorical_vae(name: str) -> None:
    objective, x = small_categorical_vae("analytic"), binary_batch(3, 8)
    exact = exact_gradients(objective, x)
    torch.manual_seed(51)
    estimator = estimators.get(name, **_temperature(name, 1.0))
    estimates = gradient_estimates(objective, x, estimator, 1, 500, 20)
    for role in ("params", "encoder"):
        z = Summary.of(getattr(estimates, role)).z(exact[role]).abs()
        assert float(z.max()) > LARGE * bonferroni_bound(z.numel()), (
            f"{name} {role}: bias z = {float(z.max()):.1f}"
        )


def test_gumbel_softmax_bias_shrinks_with_temperature_on_the_bernoulli_toy() -> None:
    bias, se = {}, {}
    for temperature in (1.0, 0.1):
        torch.manual_seed(52)
        estimator = estimators.get("gumbel_softmax", temperature=temperature)
        grads, exact = toy_gradient_estimates(toy(), estimator, 1, copies=1_000_000)
        summary = Summary.of(grads)
        bias[temperature] = float(summary.mean - exact)
        se[temperature] = float(summary.se)
    # Both biased, and the bias at 0.1 is smaller in magnitude, beyond noise.
    assert abs(bias[1.0]) > 4 * se[1.0]
    margin = abs(bias[1.0]) - abs(bias[0.1])
    assert margin > 4 * math.hypot(se[1.0], se[0.1]), (bias, se)


def test_gumbel_softmax_bias_shrinks_with_temperature_on_a_categorical_vae() -> None:
    """Bias measured as a vector over the logits: its norm falls from temperature 1 to 0.1 by
    more than 4 noise norms (the norm of the standard errors) of each."""
    objective, x = small_categorical_vae("analytic"), binary_batch(3, 8)
    exact = exact_gradients(objective, x)["params"].reshape(-1).double()
    norms, noise = {}, {}
    for temperature in (1.0, 0.1):
        torch.manual_seed(53)
        estimator = estimators.get("gumbel_softmax", temperature=temperature)
        summary = Summary.of(gradient_estimates(objective, x, estimator, 1, 500, 40).params)
        norms[temperature] = float((summary.mean - exact).norm())
        noise[temperature] = float(summary.se.norm())
    assert norms[1.0] > 10 * noise[1.0]
    assert norms[1.0] - norms[0.1] > 4 * (noise[1.0] + noise[0.1]), (norms, noise)


def test_the_relaxed_family_declares_itself_biased() -> None:
    for name in RELAXED:
        assert estimators.get(name).unbiased is False
    for name in ("pathwise", "reinforce", "exact"):
        assert estimators.get(name).unbiased is True
