"""torch.compile as an option of the throughput metric and of training in suites. The fast tests
use dynamo's "eager" backend (it traces, nothing is generated); the one that compiles with
inductor is marked slow."""

from __future__ import annotations

import math

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.metrics import MetricsError, throughput
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

FAST = {"min_run_time": 0.01, "warmup": 1, "memory": False}


def test_throughput_compiled_with_a_backend_is_labelled_and_timed() -> None:
    torch.manual_seed(0)
    objective = objectives.get("bernoulli_toy", dims=3)
    result = throughput(objective, estimators.get("reinforce"), None, compile="eager", **FAST)
    assert result.compiled and result.compile_seconds > 0
    assert math.isfinite(result.time_per_estimate) and result.time_per_estimate > 0
    eager = throughput(objective, estimators.get("reinforce"), None, **FAST)
    assert not eager.compiled and eager.compile_seconds == 0.0
    assert result.as_dict()["compiled"] is True


@pytest.mark.parametrize("value", ["", 1, None])
def test_throughput_rejects_a_bad_compile_value(value) -> None:
    objective = objectives.get("bernoulli_toy", dims=2)
    with pytest.raises(MetricsError, match="compile must be True, False or a torch.compile"):
        throughput(objective, estimators.get("reinforce"), None, compile=value, **FAST)


def suite(compile_: bool) -> dict:
    return {
        "name": "compiled",
        "training": {"steps": 3, "log_every": 1, "compile": compile_},
        "metrics": {"checkpoints": [-1], "replicas": 4, "bounds": False, "throughput": False},
        "objectives": [{"name": "bernoulli_toy", "options": {"dims": 2}}],
        "estimators": [{"name": "reinforce"}],
    }


def test_training_compile_is_a_suite_field_off_by_default() -> None:
    assert parse_suite(suite(False)).training.compile is False
    assert parse_suite(suite(True)).training.compile is True
    bad = suite(True)
    bad["training"]["compile"] = "inductor"
    with pytest.raises(ValueError, match="compile"):
        parse_suite(bad)


@pytest.mark.slow
def test_a_compiled_training_run_trains(tmp_path) -> None:
    run_dir = run(parse_suite(suite(True)), out=tmp_path / "run", device="cpu")
    with Store.open(run_dir, create=False) as store:
        frame = store.tidy()
        cells = store.cells()
    assert set(cells["status"]) == {"ok"}
    objective = frame[frame["metric"] == "train/objective"]["value"]
    assert len(objective) == 3 and objective.notna().all()
