"""A cell with replicas = "auto": it records per checkpoint the M it used, the precision it
reached and whether the target was met; the suite validates the settings."""

from __future__ import annotations

import pytest

from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.suites.schema import SuiteError, parse_suite


def suite(**metrics: object) -> dict:
    return {
        "name": "auto",
        "training": {"steps": 2, "batch_size": 8, "log_every": 1},
        "metrics": {"checkpoints": [0, -1], "bounds": False, "throughput": False, **metrics},
        "objectives": [{"name": "gaussian_toy"}, {"name": "bernoulli_toy", "options": {
            "dims": 3}}],
        "estimators": [{"name": "reinforce"}],
    }


def test_auto_cells_record_m_and_the_precision_they_reached() -> None:
    spec = parse_suite(suite(replicas="auto", replicas_min=64, replicas_max=640))
    found = {}
    for config in expand(spec).runnable:
        result = run_cell(config)
        assert result.status == "ok", result.reason
        metrics = {(step, name): value for step, name, value in result.metrics}
        for step in (0, 2):
            found[config.objective_name, step] = (
                metrics[step, "grad/distribution/replicas"],
                metrics[step, "grad/distribution/precision_met"],
                metrics[step, "grad/distribution/total_variance_rse"],
            )
    # the heavy-tailed score function runs to the cap without reaching 5%
    m, met, rse = found["gaussian_toy", 0]
    assert (m, met) == (640, 0.0) and rse > 0.05
    # the Bernoulli toy's three coordinates are light-tailed: the minimum is enough
    m, met, rse = found["bernoulli_toy", 0]
    assert (m, met) == (64, 1.0) and rse <= 0.05


def test_fixed_replicas_record_their_precision_but_no_target() -> None:
    spec = parse_suite(suite(replicas=32))
    result = run_cell(expand(spec).runnable[0])
    names = {name for _, name, _ in result.metrics}
    assert "grad/distribution/total_variance_rse" in names
    assert "grad/distribution/precision_met" not in names
    assert {v for _, n, v in result.metrics if n == "grad/distribution/replicas"} == {32.0}


@pytest.mark.parametrize(("metrics", "message"), [
    ({"replicas": "lots"}, r"replicas must be an integer in \[2, 1000000\] or 'auto' "
                           r"\(got 'lots'\)"),
    ({"replicas": 1}, r"replicas must be an integer in \[2, 1000000\] or 'auto' \(got 1\)"),
    ({"replicas": "auto", "replicas_min": 500, "replicas_max": 100},
     r"replicas_min \(500\) must be <= replicas_max \(100\)"),
    ({"replicas": "auto", "replicas_target": 0}, "replicas_target"),
])
def test_bad_replica_settings_fail_with_the_field(metrics: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite(suite(**metrics))
