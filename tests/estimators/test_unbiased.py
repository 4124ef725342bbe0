"""Unbiasedness: every unbiased estimator's mean gradient equals the exact gradient.

For each objective with an exact, differentiable value (`objective.exact`), the mean of M
independent gradient estimates must lie within the Bonferroni-corrected bound of standard errors
of autograd of `objective.exact(x).sum()`, per coordinate: for the distribution parameters (one
estimate per replica of the batch) and, for the models, for the encoder and decoder parameters
(batch means over groups of replicas, see `tests/helpers.py`). Each check is paired with power:
the same estimates must reject the exact gradient scaled by (1 + detectable).
"""

from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from tests.helpers import (
    Summary,
    assert_unbiased_with_power,
    binary_batch,
    exact_gradients,
    gaussian_batch,
    gradient_estimates,
    small_bernoulli_vae,
    small_categorical_vae,
    small_linear_gaussian,
    toy_gradient_estimates,
)

# (estimator, options, num_samples): the unbiased configurations.
NONE = ("reinforce", {"baseline": "none"}, 1)
EMA = ("reinforce", {"baseline": "ema"}, 1)
LOO = ("reinforce", {"baseline": "loo"}, 3)
LOO_DIRECT = ("reinforce", {"baseline": "loo", "direct_term": True}, 3)
NONE_DIRECT = ("reinforce", {"baseline": "none", "direct_term": True}, 4)
PATHWISE = ("pathwise", {}, 1)
PATHWISE_STL = ("pathwise", {"direct_term": False}, 2)
EXACT = ("exact", {}, 1)


def _id(case: tuple) -> str:
    name, options, num_samples = case
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{name}[{opts}]S{num_samples}"


def _build(case: tuple) -> tuple[estimators.Estimator, int]:
    name, options, num_samples = case
    return estimators.get(name, **options), num_samples


def _warm_up(objective, x, estimator, num_samples: int) -> None:
    """A few calls first, so that an EMA baseline is non-zero (and bias-corrected) when measured."""
    for _ in range(3):
        objective.estimate(x, estimator, num_samples)


# Toys ------------------------------------------------------------------------------------

TOYS = {
    # Off the defaults so the gradient is large enough for a sharp test (at target 0.499 and
    # logit 0 the REBAR toy's gradient is -5e-4).
    "bernoulli_toy": dict(target=0.45, init=0.5),
    "gaussian_toy": dict(mean=0.5, std=0.8, target=0.2),
}
TOY_CASES = [
    ("bernoulli_toy", NONE), ("bernoulli_toy", EMA), ("bernoulli_toy", LOO),
    ("bernoulli_toy", EXACT),
    ("gaussian_toy", NONE), ("gaussian_toy", EMA), ("gaussian_toy", LOO),
    ("gaussian_toy", PATHWISE),
]


@pytest.mark.parametrize(("toy", "case"), TOY_CASES, ids=[f"{t}-{_id(c)}" for t, c in TOY_CASES])
def test_unbiased_on_toys(toy: str, case: tuple) -> None:
    torch.manual_seed(10)
    objective = objectives.get(toy, **TOYS[toy]).double()
    estimator, num_samples = _build(case)
    _warm_up(objective, None, estimator, num_samples)
    grads, exact = toy_gradient_estimates(objective, estimator, num_samples, copies=200_000)
    assert_unbiased_with_power(Summary.of(grads), exact, f"{toy} {_id(case)}")


# Models ----------------------------------------------------------------------------------

def _discrete(factory):
    return lambda kl: (factory(kl), binary_batch(3, 8))


def _linear_gaussian(kl):
    objective = small_linear_gaussian(kl)
    return objective, gaussian_batch(objective, 3)


MODELS = {
    "categorical_vae": _discrete(small_categorical_vae),
    "bernoulli_vae": _discrete(small_bernoulli_vae),
    "linear_gaussian": _linear_gaussian,
}

# (model, case, replicas, groups, detectable relative bias). Plain REINFORCE on the VAEs is
# noisy (the ELBO is about -6 and multiplies the score), so it gets more replicas and its power
# is shown against a 50% bias instead of 25%.
MODEL_CASES = []
for _model in ("categorical_vae", "bernoulli_vae"):
    MODEL_CASES += [
        (_model, NONE, 500, 160, 0.5),
        (_model, NONE_DIRECT, 250, 160, 0.5),
        (_model, EMA, 250, 80, 0.25),
        (_model, LOO, 200, 80, 0.25),
        (_model, LOO_DIRECT, 200, 80, 0.25),
        (_model, EXACT, 20, 5, 0.25),
    ]
MODEL_CASES += [
    ("linear_gaussian", PATHWISE, 200, 80, 0.25),
    ("linear_gaussian", PATHWISE_STL, 200, 80, 0.25),
    ("linear_gaussian", NONE, 250, 80, 0.25),
    ("linear_gaussian", EMA, 250, 80, 0.25),
    ("linear_gaussian", LOO, 200, 80, 0.25),
    ("linear_gaussian", LOO_DIRECT, 200, 80, 0.25),
]


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
@pytest.mark.parametrize(
    ("model", "case", "replicas", "groups", "detectable"),
    MODEL_CASES,
    ids=[f"{m}-{_id(c)}" for m, c, *_ in MODEL_CASES],
)
def test_unbiased_on_models(model, case, replicas, groups, detectable, kl) -> None:
    objective, x = MODELS[model](kl)
    exact = exact_gradients(objective, x)
    torch.manual_seed(20)
    estimator, num_samples = _build(case)
    _warm_up(objective, x, estimator, num_samples)
    estimates = gradient_estimates(objective, x, estimator, num_samples, replicas, groups)
    for role in ("params", "encoder", "decoder"):
        assert_unbiased_with_power(
            Summary.of(getattr(estimates, role)),
            exact[role],
            f"{model} kl={kl} {_id(case)} {role}",
            detectable,
        )


def test_exact_gradient_is_the_reference_not_a_tautology() -> None:
    """The exact gradients the tests compare against are non-trivial (not all zero) for every
    role, so a matching mean is informative."""
    for model in MODELS:
        objective, x = MODELS[model]("analytic")
        exact = exact_gradients(objective, x)
        for role, grad in exact.items():
            assert torch.isfinite(grad).all(), (model, role)
            assert grad.abs().max() > 1e-3, (model, role)


def test_a_sample_dependent_baseline_is_caught() -> None:
    """Power against a real bug: a REINFORCE whose baseline includes the sample itself (the mean
    over all S samples instead of leave-one-out) is biased by a factor (S - 1) / S on the score
    term; the same test that passes RLOO must reject it."""

    class SelfInclusiveBaseline(estimators.Reinforce):
        def baseline_values(self, fz):
            return fz.detach().mean(0, keepdim=True)

    # kl="sampled": all of the ELBO goes through the score term, so the whole gradient halves.
    objective, x = MODELS["categorical_vae"]("sampled")
    exact = exact_gradients(objective, x)
    torch.manual_seed(21)
    estimates = gradient_estimates(objective, x, SelfInclusiveBaseline(), 2, 200, 80)
    Summary.of(estimates.params).assert_rejects(exact["params"], "self-inclusive baseline")
    # Its bias is exactly the factor (S - 1) / S = 1/2 on the score term; the decoder's gradient
    # does not go through the score, so it stays unbiased.
    Summary.of(estimates.params).assert_matches(exact["params"] / 2, "halved score term")
    Summary.of(estimates.encoder).assert_matches(exact["encoder"] / 2, "halved score term")
    Summary.of(estimates.decoder).assert_matches(exact["decoder"], "decoder")
