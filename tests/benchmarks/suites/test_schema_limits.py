"""Numbers a run could not survive, and values of the wrong type, are refused by the schema with
the field named: a suite is either runnable or exit 2, never a run that cannot end."""

from __future__ import annotations

import pytest

from estibench.benchmarks.suites.schema import SuiteError, parse_suite

BASE = {"name": "limits", "objectives": [{"name": "bernoulli_toy"}],
        "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}},
                       {"name": "exact"}],
        "num_samples": [2]}


def _refused(raw: dict, field: str) -> str:
    with pytest.raises(SuiteError) as info:
        parse_suite(raw)
    assert field in str(info.value), str(info.value)
    return str(info.value)


@pytest.mark.parametrize("section, key, value", [
    ("training", "steps", 2**63),
    ("training", "steps", "200"),  # a string is not a number, even one that reads as one
    ("training", "batch_size", 10**9),
    ("training", "learning_rate", 1e308),
    ("training", "learning_rate", "0.001"),
    ("metrics", "replicas", 10**15),
    ("metrics", "replicas_max", 10**9),
    ("metrics", "eval_batch_size", 10**9),
    ("metrics", "iwae_ks", [1, 2**40]),
    ("metrics", "throughput_min_run_time", 1e9),
    ("metrics", "bounds", "yes"),
])
def test_out_of_range_and_mistyped_numbers_name_the_field(section, key, value):
    message = _refused({**BASE, section: {key: value}}, f"{section}.{key}")
    assert repr(value)[:20] in message or str(value)[:20] in message


def test_the_limits_leave_every_shipped_suite_valid():
    from estibench.benchmarks.suites.schema import available_suites, load_suite

    for name in available_suites():
        load_suite(name)
        load_suite(name, quick=load_suite(name).quick is not None)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_claim_against_nan_or_inf_is_refused(value):
    claim = {"statement": "s", "source": "x", "metric": "grad/distribution/total_variance",
             "left": {"estimator": "reinforce-loo"}, "relation": "<", "value": value}
    _refused({**BASE, "claims": [claim]}, "claims.0.value")


def test_a_claim_comparing_a_cell_with_itself_is_refused():
    cell = {"estimator": "reinforce-loo"}
    claim = {"statement": "s", "source": "x", "metric": "grad/distribution/total_variance",
             "left": cell, "relation": "<", "right": dict(cell)}
    message = _refused({**BASE, "claims": [claim]}, "claims.0")
    assert "same" in message


def test_many_seeds_validate_in_linear_time():
    """100,000 seeds: a repeat check that compares every seed with every other one would not
    finish (10^10 comparisons); one pass over a counter does."""
    seeds = list(range(100_000))
    assert len(parse_suite({**BASE, "seeds": seeds}).seeds) == 100_000
    message = _refused({**BASE, "seeds": [*seeds, 7]}, "seeds")
    assert "repeated: 7" in message


def test_a_directory_named_after_a_shipped_suite_does_not_hide_it(tmp_path, monkeypatch):
    """`estibench run smoke --out smoke` leaves a folder `smoke` here; `smoke` still names
    the shipped suite (any other directory is still refused)."""
    from estibench.benchmarks.suites.schema import SUITES_DIR, SuiteError, suite_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    (tmp_path / "mine").mkdir()
    assert suite_path("smoke") == SUITES_DIR / "smoke.toml"
    with pytest.raises(SuiteError, match="is a directory"):
        suite_path("mine")
