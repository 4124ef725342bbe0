"""What ran is what the label says: an estimator's own temperature runs, a suite's schedule only
drives estimators that set none, and every cell records the temperature it ran at."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from estibench import estimators
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.harness.temperature import temperature_of
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

TARGET = 0.499
DIMS, REPLICAS = 100, 1000  # 10^5 estimates per temperature


def relaxed_moments(tau: float, nodes: int = 200) -> tuple[float, float]:
    """Variance and fourth central moment of the Gumbel-Softmax estimate of d/dphi E[-(b - t)^2]
    on the Bernoulli toy at phi = 0, S = 1, by Gauss-Legendre quadrature over the uniform u:
    the relaxed sample is sigmoid((phi + logistic(u)) / tau) and the estimate is the derivative
    of f(relaxed) with respect to phi (taken by autograd, one phi per node)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    u = torch.tensor((x + 1) / 2, dtype=torch.float64)
    weight = torch.tensor(w / 2, dtype=torch.float64)
    phi = torch.zeros_like(u, requires_grad=True)
    relaxed = torch.sigmoid((phi + torch.log(u) - torch.log1p(-u)) / tau)
    (g,) = torch.autograd.grad((-(relaxed - TARGET) ** 2).sum(), phi)
    mean = (weight * g).sum()
    variance = (weight * (g - mean) ** 2).sum()
    fourth = (weight * (g - mean) ** 4).sum()
    return float(variance), float(fourth)


def test_the_quadrature_converges() -> None:
    for tau in (0.5, 1.0):
        coarse, fine = relaxed_moments(tau, 100)[0], relaxed_moments(tau, 200)[0]
        assert coarse == pytest.approx(fine, rel=1e-8)


def test_halving_the_temperature_about_triples_the_relaxed_variance() -> None:
    ratio = relaxed_moments(0.5)[0] / relaxed_moments(1.0)[0]
    assert 2.8 < ratio < 3.0, ratio


def _suite(training: dict | None = None, estimators: list | None = None) -> dict:
    return {
        "name": "temperatures", "seeds": [0], "num_samples": [1],
        "training": {"steps": 0, **(training or {})},
        "metrics": {"checkpoints": [0], "replicas": REPLICAS, "wrt": ["distribution"],
                    "bounds": False, "throughput": False},
        "objectives": [{"name": "bernoulli_toy", "options": {"dims": DIMS}}],
        "estimators": estimators or [
            {"name": "gumbel_softmax", "options": {"temperature": 0.5}},
            {"name": "gumbel_softmax", "options": {"temperature": 1.0}},
        ],
    }


def test_a_suite_measures_each_estimator_at_its_own_temperature(tmp_path) -> None:
    run_dir = run(parse_suite(_suite()), out=tmp_path / "run", device="cpu")
    with Store.open(run_dir, create=False) as store:
        cells, metrics = store.cells(), store.metrics()
    assert set(cells["status"]) == {"ok"}
    variance = metrics[metrics["metric"] == "grad/distribution/total_variance"]
    measured = dict(zip(cells["key"], cells["config"], strict=True))
    seen = set()
    for key, value in zip(variance["key"], variance["value"], strict=True):
        tau = measured[key]["temperature"]
        seen.add(tau)
        sigma2, mu4 = relaxed_moments(tau)
        # The total variance is the sum over DIMS iid coordinates of sample variances of
        # REPLICAS estimates: its standard error is sqrt(DIMS (mu4 - sigma^4) / M).
        se = math.sqrt(DIMS * (mu4 - sigma2**2) / REPLICAS)
        assert abs(value - DIMS * sigma2) < 4 * se, (tau, value, DIMS * sigma2, se)
    assert seen == {0.5, 1.0}


def test_the_temperature_that_runs_is_recorded_in_every_cell() -> None:
    schedule = {"initial": 1.0, "minimum": 0.5, "rate": 1e-3}
    suite = parse_suite(_suite({"temperature": schedule}, [
        {"name": "gumbel_softmax", "options": {"temperature": 0.3}},
        {"name": "st_gumbel"},
        {"name": "straight_through"},
        {"name": "reinforce"},
    ]))
    ran = {c.estimator.label: c.estimator.temperature for c in expand(suite).runnable}
    assert ran == {"gumbel_softmax-0.3": 0.3, "st_gumbel": schedule,
                   "straight_through": None, "reinforce": None}
    without = parse_suite(_suite(None, [{"name": "st_gumbel"}]))
    assert without.training.temperature is None
    assert [c.estimator.temperature for c in expand(without).runnable] == [1.0]


def test_temperature_of_follows_the_options() -> None:
    def of(name, options, schedule):
        return temperature_of(estimators.get(name, **options), options, schedule)

    assert of("gumbel_softmax", {"temperature": 2.0}, None) == 2.0
    assert of("gumbel_softmax", {}, None) == 1.0
    assert of("pathwise", {}, {"initial": 1.0, "minimum": 0.5, "rate": 0.0}) is None


def test_a_schedule_drives_the_measured_temperature(tmp_path) -> None:
    """With a schedule the checkpoint at step 0 measures tau(0) = initial: 0.5 here, and so the
    variance of the tau = 0.5 closed form, not the estimator's default 1.0."""
    suite = _suite({"temperature": {"initial": 0.5, "minimum": 0.1, "rate": 0.0}},
                   [{"name": "gumbel_softmax"}])
    run_dir = run(parse_suite(suite), out=tmp_path / "run", device="cpu")
    with Store.open(run_dir, create=False) as store:
        metrics = store.metrics()
    value = float(metrics[metrics["metric"] == "grad/distribution/total_variance"]["value"].iloc[0])
    sigma2, mu4 = relaxed_moments(0.5)
    assert abs(value - DIMS * sigma2) < 4 * math.sqrt(DIMS * (mu4 - sigma2**2) / REPLICAS)
