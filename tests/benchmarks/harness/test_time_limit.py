"""A cell that never ends is stopped at its time limit and recorded as failed with the reason,
and the rest of the run completes, in process and on the pool; a planning dry run that never
returns breaks its pair only; resume reruns a stopped cell (with a new limit if given)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from estibench import estimators
from estibench.benchmarks.harness import plan as planning
from estibench.benchmarks.harness.time_limit import TimeLimitExceeded, time_limit
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite
from tests.cli_support import cli
from tests.plugin_support import write_plugin
from tests.runs import TOY

SLEEPER = '''
import time

import torch
from estibench.estimators import Estimator
from estibench.estimators.base import output


class Sleeper(Estimator):
    """Plans like any estimator (no gradient there), then never returns from training."""

    name = "sleeper"
    supports = "anything"

    def estimate(self, q, f, num_samples, noise):
        if torch.is_grad_enabled():
            time.sleep(3600)
        z = q.sample((num_samples,))
        return output(self.evaluate(f, z, num_samples, q), z)
'''

# the shared toy suite, a limit of 10 s on each cell, and the sleeper beside RLOO
SUITE = TOY.replace("seeds = [0]", "seeds = [0]\ncell_timeout = 10") + (
    '[[estimators]]\nname = "sleeper"\n')


def _statuses(run_dir: Path) -> dict[str, tuple[str, str | None]]:
    with Store.open(run_dir, create=False) as store:
        cells = store.cells()
    return {config["estimator"]: (status, reason) for config, status, reason in
            zip(cells["config"], cells["status"], cells["reason"], strict=True)}


@pytest.mark.parametrize("workers", ["1", "2"], ids=["in process", "pool"])
def test_a_cell_past_its_limit_fails_alone_and_resume_runs_it_again(tmp_path, workers):
    plugin = write_plugin(tmp_path / "site", "sleeper_plugin", SLEEPER,
                          {"estibench.estimators": "sleeper = sleeper_plugin:Sleeper"})
    env = {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    suite = tmp_path / "sleeper.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    started = time.perf_counter()
    result = cli("run", str(suite), "--out", str(out), "--device", "cpu", "--no-report",
                 "--workers", workers, env=env, timeout=240)
    assert time.perf_counter() - started < 200
    assert result.returncode == 1, result.stderr  # a failed cell, not a stalled run
    status = _statuses(out)
    assert status["reinforce-loo"][0] == "ok"
    failed, reason = status["sleeper"]
    assert failed == "failed"
    assert "the cell exceeded its time limit of 10 s" in reason and "resume" in reason
    if workers == "1":  # resume reruns it, under the limit given now
        again = cli("run", "--resume", str(out), "--no-report", "--cell-timeout", "1",
                    env=env, timeout=240)
        assert again.returncode == 1, again.stderr
        assert "time limit of 1 s" in _statuses(out)["sleeper"][1]


def test_a_dry_run_that_never_returns_breaks_its_pair_only(monkeypatch):
    namespace: dict = {}
    exec(SLEEPER.replace("if torch.is_grad_enabled():", "if True:"), namespace)
    monkeypatch.setattr(estimators.registry, "_factories",
                        dict(estimators.registry._factories))
    estimators.register("sleeper", namespace["Sleeper"])
    monkeypatch.setattr(planning, "PLAN_TIME_LIMIT", 1.0)
    plan = planning.expand(parse_suite({**_suite_dict(), "cell_timeout": None}))
    broken = {cell.estimator.label: reason for cell, reason in plan.broken}
    assert "sleeper" in broken and "exceeded its time limit of 1 s" in broken["sleeper"]
    assert [cell.estimator.label for cell in plan.runnable] == ["reinforce-loo"]
    # without a suite value, the default limit: generous, at least 15 minutes
    assert plan.runnable[0].time_limit >= planning.MIN_CELL_TIME_LIMIT


def _suite_dict() -> dict:
    import tomllib

    return {"name": "sleeper", **tomllib.loads(SUITE)}


def test_the_limit_is_lifted_after_the_block():
    with time_limit(0.5, "quick work"):
        pass
    time.sleep(0.7)  # no alarm left behind
    with (pytest.raises(TimeLimitExceeded, match="slow work exceeded its time limit of 0.2 s"),
          time_limit(0.2, "slow work")):
        time.sleep(5)


def test_listing_an_estimator_whose_dry_run_never_returns_breaks_its_row_only(monkeypatch):
    """`estibench list estimators` dry-runs a plugin to count its evaluations of f: under the
    planning time limit, so a plugin that never returns is a row saying so."""
    from estibench.benchmarks.harness import catalogue

    namespace: dict = {}
    exec(SLEEPER.replace("if torch.is_grad_enabled():", "if True:"), namespace)
    monkeypatch.setattr(estimators.registry, "_factories",
                        dict(estimators.registry._factories))
    estimators.register("sleeper", namespace["Sleeper"])
    monkeypatch.setattr(catalogue, "LIST_TIME_LIMIT", 1.0)
    rows = {row.name: row for row in catalogue.describe_estimators()}
    assert rows["sleeper"].family == "broken"
    assert "exceeded its time limit of 1 s" in rows["sleeper"].applies_to
    assert rows["pathwise"].family != "broken"
