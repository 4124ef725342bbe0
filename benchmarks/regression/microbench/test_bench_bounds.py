"""pytest-benchmark: one bounds pass (ELBO, IWAE-k, exact log p(x), gap) on small VAEs.

Skipped by the default test run; see test_bench_estimators.py for how to run and compare.
"""

from __future__ import annotations

import math

import pytest
import torch

from estibench.benchmarks import metrics
from estibench.benchmarks.regression.asv.common import IWAE_KS, SEED, Problem


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """`Problem` sets one torch thread and seeds torch's generator: undo both afterwards."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("objective", ["categorical_vae", "bernoulli_vae"])
def test_bounds_pass(benchmark, objective: str) -> None:
    problem = Problem(objective, "exact")
    benchmark.group = "bounds"
    benchmark.extra_info.update(objective=objective, ks=list(IWAE_KS))
    result = benchmark(metrics.bounds, problem.objective, problem.x, ks=IWAE_KS, seed=SEED)
    values = result.as_dict()
    assert values["log_marginal_exact"] == 1.0
    assert math.isfinite(values["gap"]) and values["elbo"] <= values[f"iwae_{max(IWAE_KS)}"]
