"""The floor of the vectorized statistics (`speed.engine.plain_loss`, vmapped) computes the
engine's estimates: replica by replica, from the same noise, for every floor case and wrt (so
the timed ratio compares like with like)."""

from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.metrics.engine import replica_estimates
from estibench.benchmarks.regression.speed.engine import (
    FLOOR_CASES,
    WRT,
    floor_statistics,
    plain_loss,
)


@pytest.fixture
def float64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def setup(kl: str, name: str, options: dict, samples: int):
    torch.manual_seed(0)
    objective = objectives.get("categorical_vae", input_dim=64, hidden=16, variables=3,
                               categories=4, kl=kl).eval()
    x = (torch.rand(5, 64, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    noise = metrics.common_noise(objective, x, 6, samples, seed=3)
    return objective, estimators.get(name, **options), x, noise


def targets(objective, x, wrt: str) -> tuple[torch.Tensor, ...]:
    if wrt == "distribution":
        with torch.no_grad():
            return (objective.posterior_params(x),)
    named = dict(objective.named_parameters())
    return tuple(named[n].detach() for n in objective.parameter_groups()[wrt])


@pytest.mark.parametrize("case", FLOOR_CASES, ids=[c[0] for c in FLOOR_CASES])
@pytest.mark.parametrize("wrt", WRT)
def test_the_floor_computes_the_engine_estimates(case, wrt, float64) -> None:
    label, name, options, samples, kl = case
    objective, estimator, x, noise = setup(kl, name, options, samples)
    expected, _ = replica_estimates(objective, estimator, x, noise, samples, wrt)
    values = targets(objective, x, wrt)
    per_replica = torch.func.vmap(torch.func.grad(plain_loss(objective, name, samples, kl, x,
                                                             wrt)), in_dims=(None, 0))
    grads = per_replica(values, noise)
    got = torch.cat([g.reshape(noise.shape[0], -1) for g in grads], 1)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_the_floor_reduces_as_the_statistics_do(float64) -> None:
    label, name, options, samples, kl = FLOOR_CASES[0]
    objective, estimator, x, noise = setup(kl, name, options, samples)
    values = targets(objective, x, "encoder")
    variance = floor_statistics(objective, plain_loss(objective, name, samples, kl, x,
                                                      "encoder"), values, noise, 4)()
    stats = metrics.gradient_stats(objective, estimator, x, replicas=6, num_samples=samples,
                                   wrt="encoder", noise=noise, chunk_size=4, exact=False)
    torch.testing.assert_close(variance.sum().item(), stats.total_variance, rtol=1e-9, atol=0)
