"""pytest-benchmark: one gradient estimate per estimator family on a small VAE.

Skipped by the default test run (`--benchmark-skip` in pyproject's addopts). Run them with
`python -m pytest tests/benchmarks --benchmark-only`; `--benchmark-disable` runs each body once
(CI: so they cannot rot). The configurations are the asv suite's
(`benchmarks/regression/asv/common.py`):
the discrete families on categorical_vae (4 variables x 4 categories, batch 32 x 64, S = 4),
pathwise and measure_valued on gaussian_vae (4 latent dimensions), the antithetic pair on
bernoulli_vae (8 bits) and the antithetic estimators of categoricals (disarm by stick breaking,
carms) on categorical_vae, vimco on its IWAE bound, the IWAE-bound estimators on gaussian_vae's
bound = "iwae" twin, unordered_set on the Bernoulli toy (one variable per element), one torch
thread.
"""

from __future__ import annotations

import pytest
import torch

from estibench.benchmarks.regression.asv.common import Problem


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """`Problem` sets one torch thread and seeds torch's generator: undo both afterwards."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)


FAMILIES = [
    ("gaussian_vae", "pathwise"),
    ("categorical_vae", "reinforce_loo"),
    ("categorical_vae", "reinforce_grpo"),
    ("categorical_vae", "reinforce_drgrpo"),
    ("categorical_vae", "gumbel_softmax"),
    ("categorical_vae", "st_gumbel"),
    ("categorical_vae", "straight_through"),
    ("categorical_vae", "exact"),
    ("bernoulli_vae", "arm"),
    ("bernoulli_vae", "disarm"),
    ("categorical_vae", "disarm"),  # coupled stick breaking
    ("categorical_vae", "carms"),
    ("bernoulli_vae_iwae", "vimco"),
    ("categorical_vae", "indecater"),
    ("bernoulli_toy", "unordered_set"),
    ("categorical_vae", "reinmax"),
    ("categorical_vae", "gumbel_rao"),
    ("categorical_vae", "gapped_st"),
    ("gaussian_vae_iwae", "iwae"),
    ("gaussian_vae_iwae", "iwae_stl"),
    ("gaussian_vae_iwae", "dreg"),
    ("gaussian_vae", "measure_valued"),
    ("categorical_vae", "nvil"),
    ("categorical_vae", "muprop"),
    ("categorical_vae", "rebar"),
    ("categorical_vae", "relax"),
]


def family_id(objective: str, estimator: str) -> str:
    """The estimator's label; on an objective after its first, the objective's name too."""
    first = next(o for o, e in FAMILIES if e == estimator)
    return estimator if objective == first else f"{estimator}-{objective}"


@pytest.mark.parametrize(("objective", "estimator"), FAMILIES,
                         ids=[family_id(*family) for family in FAMILIES])
def test_gradient_estimate(benchmark, objective: str, estimator: str) -> None:
    problem = Problem(objective, estimator)
    problem.gradient_estimate()  # warm-up outside the timing
    benchmark.group = "gradient estimate"
    benchmark.extra_info.update(objective=objective, estimator=estimator)
    benchmark(problem.gradient_estimate)
    grads = [p.grad for p in problem.objective.parameters() if p.grad is not None]
    assert grads and all(g.isfinite().all() for g in grads)
