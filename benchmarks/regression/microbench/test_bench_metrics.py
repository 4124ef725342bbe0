"""pytest-benchmark: the measurement engine on the digits-sized categorical VAE.

Skipped by the default test run (`--benchmark-skip` in pyproject's addopts); run with
`python -m pytest benchmarks/regression/microbench/test_bench_metrics.py --benchmark-only -p
no:cacheprovider` and compare the "gradient_stats" group's vectorized and loop rows
(benchmarks/regression/speed/engine.py prints the ratios). Configuration: input 64, hidden 200, 8
variables x 8 categories, a batch of 32 random binary vectors, M = 256 replicas, one torch thread.
"""

from __future__ import annotations

import math

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import metrics, objectives

REPLICAS = 256
ESTIMATORS = {
    "reinforce_loo": (("reinforce", {"baseline": "loo"}), 2),
    "reinforce_grpo": (("reinforce", {"baseline": "grpo"}), 2),  # the group's mean and std
    "gumbel_softmax": (("gumbel_softmax", {}), 1),
    "gumbel_rao": (("gumbel_rao", {"mc": 10}), 1),  # 10 noise streams, K conditional draws
    "rebar": (("rebar", {}), 1),  # two noise streams, a pathwise part inside the transform
    "disarm": (("disarm", {}), 1),  # a pair of stick-breaking chains
    "carms": (("carms", {}), 2),  # the coupled samples' sort and the pair pmf, per replica
}



@pytest.fixture(scope="module")
def problem() -> tuple[objectives.Objective, torch.Tensor]:
    torch.manual_seed(0)
    objective = objectives.get("categorical_vae", input_dim=64, hidden=200, variables=8,
                               categories=8)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 64, generator=g) < 0.5).float()
    return objective, x


@pytest.mark.parametrize("method", ["vectorized", "loop"])
@pytest.mark.parametrize("wrt", ["encoder", "distribution"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_gradient_stats(benchmark, problem, name: str, wrt: str, method: str) -> None:
    objective, x = problem
    (estimator_name, options), samples = ESTIMATORS[name]
    estimator = estimators.get(estimator_name, **options)
    benchmark.group = f"gradient_stats {name} wrt={wrt} M={REPLICAS}"
    benchmark.extra_info.update(estimator=name, wrt=wrt, method=method, replicas=REPLICAS,
                                num_samples=samples)

    def run() -> metrics.GradientStats:
        return metrics.gradient_stats(objective, estimator, x, replicas=REPLICAS,
                                      num_samples=samples, wrt=wrt, method=method, seed=0)

    run()  # warm-up (torch.func traces lazily)
    stats = benchmark.pedantic(run, rounds=3, iterations=1)
    assert stats.replicas == REPLICAS and math.isfinite(stats.total_variance)


def test_bounds_pass(benchmark, problem) -> None:
    objective, x = problem
    benchmark.group = "bounds"
    benchmark.extra_info.update(examples=int(x.shape[0]), ks=[1, 10, 100, 1000])
    result = benchmark.pedantic(
        metrics.bounds, args=(objective, x), kwargs={"ks": (1, 10, 100, 1000), "seed": 0},
        rounds=3, iterations=1,
    )
    values = result.as_dict()
    assert values["log_marginal_exact"] == 0.0  # 8^8 configurations: the IWAE-1000 reference
    assert values["elbo"] <= values["iwae_1000"]
