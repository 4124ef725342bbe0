"""The zoo's unbiased estimators on the small discrete VAEs: the mean of M estimates matches
the exact ELBO gradient (enumeration) for the distribution, encoder and decoder parameters,
with the calibrated test of tests/helpers.py (Bonferroni z-test per coordinate, with power).
VIMCO, an estimator of the IWAE bound, is tested in tests/estimators/test_multi_sample_vimco.py."""

from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import metrics
from tests.helpers import (
    Summary,
    assert_unbiased_with_power,
    binary_batch,
    exact_gradients,
    gradient_estimates,
    small_bernoulli_vae,
    small_categorical_vae,
)

MODELS = {
    "bernoulli_vae": lambda kl: small_bernoulli_vae(kl),
    "categorical_vae": lambda kl: small_categorical_vae(kl),
    # One variable of 5 categories: what the unordered set estimator applies to.
    "categorical_vae_1x5": lambda kl: small_categorical_vae(kl, variables=1, categories=5),
}
# (model, estimator, options, num_samples, replicas, groups)
CASES = [
    ("bernoulli_vae", "arm", {}, 1, 200, 60),
    ("bernoulli_vae", "disarm", {}, 1, 200, 60),
    ("bernoulli_vae", "indecater", {}, 1, 100, 40),
    ("categorical_vae", "indecater", {}, 1, 100, 40),
    ("categorical_vae_1x5", "unordered_set", {"k": 2}, 1, 150, 40),
    ("categorical_vae_1x5", "unordered_set", {"k": 3, "baseline": False}, 1, 150, 40),
]


@pytest.mark.parametrize("kl", ["analytic", "sampled"])
@pytest.mark.parametrize(("model", "name", "options", "num_samples", "replicas", "groups"),
                         CASES, ids=[f"{c[0]}-{c[1]}{c[2] or ''}" for c in CASES])
def test_unbiased_on_the_small_vaes(model, name, options, num_samples, replicas, groups,
                                    kl) -> None:
    objective, x = MODELS[model](kl), binary_batch(3, 8)
    exact = exact_gradients(objective, x)
    torch.manual_seed(70)
    estimator = estimators.get(name, **options)
    estimates = gradient_estimates(objective, x, estimator, num_samples, replicas, groups)
    for role in ("params", "encoder", "decoder"):
        assert_unbiased_with_power(Summary.of(getattr(estimates, role)), exact[role],
                                   f"{model} kl={kl} {name}{options} {role}")


VECTORIZED = [  # (estimator, options, objective factory, num_samples)
    ("arm", {}, lambda: small_bernoulli_vae("sampled"), 2),
    ("disarm", {}, lambda: small_bernoulli_vae("sampled"), 2),
    ("indecater", {}, lambda: small_categorical_vae("sampled"), 2),
    ("unordered_set", {"k": 3}, lambda: small_categorical_vae(variables=1, categories=5), 2),
    ("vimco", {}, lambda: small_bernoulli_vae(bound="iwae"), 3),
]


@pytest.mark.parametrize(("name", "options", "factory", "num_samples"), VECTORIZED,
                         ids=[c[0] for c in VECTORIZED])
def test_vectorized_statistics_match_the_loop_oracle(name, options, factory, num_samples):
    """The metrics engine's torch.func path runs the estimator under vmap: same numbers as one
    backward pass per replica, from the same noise."""
    objective, x = factory(), binary_batch(3, 8)
    estimator = estimators.get(name, **options)
    stats = {method: metrics.gradient_stats(objective, estimator, x, replicas=16,
                                            num_samples=num_samples, wrt="encoder",
                                            method=method, seed=5, chunk_size=8)
             for method in ("vectorized", "loop")}
    assert torch.allclose(stats["vectorized"].mean, stats["loop"].mean, rtol=1e-9, atol=1e-12)
    assert torch.allclose(stats["vectorized"].variance, stats["loop"].variance, rtol=1e-9,
                          atol=1e-12)
