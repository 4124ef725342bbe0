"""Every option that changes the problem or the estimator is part of the label results are
grouped by: two sizes of one model are two rows, never averaged as if they were seeds."""

from __future__ import annotations

import pytest

from estibench import reports
from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.suites.schema import SuiteError, parse_suite

SMALL = {"variables": 2, "categories": 2, "hidden": 8}
LARGER = {"variables": 3, "categories": 2, "hidden": 8}


def _suite(objectives: list[dict]) -> dict:
    return {
        "name": "sizes", "seeds": [0, 1], "num_samples": [2],
        "training": {"steps": 2, "batch_size": 8, "log_every": 1},
        "metrics": {"checkpoints": [-1], "replicas": 4, "eval_batch_size": 8, "bounds": False,
                    "throughput": False, "wrt": ["distribution"]},
        "objectives": objectives,
        "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}],
    }


def test_objective_labels_name_the_options_that_differ_from_the_defaults() -> None:
    suite = parse_suite(_suite([
        {"name": "categorical_vae", "options": {**SMALL, "input_dim": 64}},
        {"name": "categorical_vae", "options": {"hidden": [16, 8]}},
        {"name": "bernoulli_vae", "options": {"hidden": []}},  # the default, as a list
        {"name": "categorical_vae", "options": LARGER, "label": "mine"},
    ]))
    assert [o.id for o in suite.objectives] == [
        "categorical_vae-2-8-2", "categorical_vae-16x8", "bernoulli_vae", "mine"]
    assert [o.display for o in suite.objectives] == [
        "categorical_vae(categories=2, hidden=8, variables=2)", "categorical_vae(hidden=16x8)",
        "bernoulli_vae", "mine"]


def test_two_objectives_with_the_same_label_are_refused_naming_the_field() -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(_suite([{"name": "categorical_vae", "options": SMALL},
                            {"name": "bernoulli_toy"},
                            {"name": "categorical_vae", "options": dict(SMALL)}]))
    message = str(err.value)
    assert "objectives[0] and objectives[2]" in message
    assert "'categorical_vae-2-8-2'" in message and "set `label`" in message


def test_duplicate_estimator_labels_are_refused_naming_the_field() -> None:
    raw = _suite([{"name": "bernoulli_toy"}])
    raw["estimators"] = [{"name": "reinforce"}, {"name": "reinforce", "options": {}}]
    with pytest.raises(SuiteError, match=r"estimators\[0\] and estimators\[1\]"):
        parse_suite(raw)


def test_two_sizes_of_a_model_are_two_rows_in_tables_and_comparisons(tmp_path) -> None:
    suite = parse_suite(_suite([{"name": "categorical_vae", "options": SMALL},
                                {"name": "categorical_vae", "options": LARGER}]))
    run_dir = run(suite, out=tmp_path / "run", device="cpu")
    frame = reports.load(run_dir)
    table = reports.summary_table(frame)
    # reports name the options that differ (the stored labels stay categorical_vae-2-8-2...)
    assert sorted(table["objective"]) == [
        "categorical_vae(categories=2, hidden=8, variables=2)",
        "categorical_vae(categories=2, hidden=8, variables=3)"]
    assert list(table["seeds"]) == [2, 2]
    comparison = reports.compare(run_dir, run_dir)
    assert set(comparison.table["objective"]) == set(table["objective"])
