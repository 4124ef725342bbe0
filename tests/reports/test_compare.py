"""estibench.reports.compare: ratios B/A with noise-aware regression flags."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from estibench import reports
from estibench.benchmarks.results.store import Store
from estibench.reports.compare import Thresholds
from tests.reports.fabricate import FAILED_REASON, Knobs, fabricate_problem_run, fabricate_run

SLOW = "reinforce-loo"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fabricate_run(tmp_path_factory.mktemp("a") / "run")


def variant(tmp_path: Path, **knobs: Any) -> Path:
    return fabricate_run(tmp_path / "b", Knobs(**knobs))


def flagged(result: reports.Comparison) -> set[tuple[str, str, str]]:
    rows = result.table[result.table["regression"]]
    return set(zip(rows["objective"], rows["estimator"], rows["quantity"], strict=True))


def test_identical_runs_pass(baseline: Path, tmp_path: Path) -> None:
    result = reports.compare(baseline, variant(tmp_path))
    assert result.ok and result.regressions == []
    table = result.table
    assert set(table["quantity"]) == {"time per estimate", "gradient variance", "test ELBO"}
    assert len(table) == 5 * 3  # five completed pairs x three quantities
    ratios = table[table["quantity"] != "test ELBO"]["change"]
    assert ratios.to_numpy() == pytest.approx(1.0)
    assert table[table["quantity"] == "test ELBO"]["change"].to_numpy() == pytest.approx(0.0)


def test_a_2x_slowdown_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    result = reports.compare(baseline, variant(tmp_path, time_factor={SLOW: 2.0}))
    assert not result.ok
    assert flagged(result) == {("bernoulli_vae", SLOW, "time per estimate"),
                               ("gaussian_vae", SLOW, "time per estimate")}
    row = result.table[(result.table["estimator"] == SLOW)
                       & (result.table["quantity"] == "time per estimate")].iloc[0]
    assert row["change"] == pytest.approx(2.0)
    assert row["change_lo"] > 1.5
    assert any("time per estimate x2" in line for line in result.regressions)


def test_a_10x_variance_increase_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    result = reports.compare(baseline, variant(tmp_path, variance_factor={"pathwise": 10.0}))
    assert flagged(result) == {("gaussian_vae", "pathwise", "gradient variance")}
    row = result.table[result.table["quantity"] == "gradient variance"]
    assert row[row["estimator"] == "pathwise"]["change"].iloc[0] == pytest.approx(10.0)


def test_a_1_1x_change_within_seed_noise_passes(tmp_path: Path) -> None:
    noisy = Knobs(time_jitter=0.3, variance_jitter=0.3)
    a = fabricate_run(tmp_path / "a", noisy)
    b = fabricate_run(tmp_path / "b", Knobs(time_jitter=0.3, variance_jitter=0.3,
                                            time_factor={SLOW: 1.1},
                                            variance_factor={SLOW: 1.1}))
    assert reports.compare(a, b).ok  # default thresholds
    # Even with thresholds below 1.1 the change is inside the seed noise: not flagged.
    tight = Thresholds(time=1.05, variance=1.05)
    result = reports.compare(a, b, tight)
    assert result.ok
    rows = result.table[result.table["estimator"] == SLOW]
    assert (rows[rows["quantity"] != "test ELBO"]["change"] > 1.05).all()


def test_the_same_change_without_noise_is_flagged(tmp_path: Path) -> None:
    # The noise gate, not only the threshold, decides: quiet runs make 1.1x significant.
    quiet: dict[str, Any] = {"time_jitter": 0.002, "variance_jitter": 0.002, "timing_iqr": None}
    a = fabricate_run(tmp_path / "a", Knobs(**quiet))
    b = fabricate_run(tmp_path / "b", Knobs(**quiet, time_factor={SLOW: 1.1}))
    result = reports.compare(a, b, Thresholds(time=1.05))
    assert flagged(result) == {("bernoulli_vae", SLOW, "time per estimate"),
                               ("gaussian_vae", SLOW, "time per estimate")}


def test_timing_iqr_counts_as_noise(tmp_path: Path) -> None:
    # Quiet seeds, but each timing has a wide IQR (50% of the median): 1.1x is within it.
    noisy_timer: dict[str, Any] = {"time_jitter": 0.002, "variance_jitter": 0.002,
                                   "timing_iqr": 0.5}
    a = fabricate_run(tmp_path / "a", Knobs(**noisy_timer))
    b = fabricate_run(tmp_path / "b", Knobs(**noisy_timer, time_factor={SLOW: 1.1}))
    assert reports.compare(a, b, Thresholds(time=1.05)).ok


def test_an_elbo_drop_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    run = tmp_path / "b"
    fabricate_run(run)
    # shift every ELBO of B down by 5 nats by rewriting the metric rows
    with Store.open(run, create=False) as store:
        store._db.execute("UPDATE metrics SET value = value - 5 WHERE metric = 'test/elbo'")
    result = reports.compare(baseline, run)
    assert {q for _, _, q in flagged(result)} == {"test ELBO"}
    assert len(flagged(result)) == 5
    assert any("dropped by 5" in line for line in result.regressions)


def test_a_pair_that_now_fails_is_a_regression(baseline: Path, tmp_path: Path) -> None:
    broken = variant(tmp_path, failed_pairs=(("gaussian_vae", "gumbel_softmax"),))
    result = reports.compare(baseline, broken)
    assert not result.ok
    assert result.regressions == [
        f"gaussian_vae / gumbel_softmax (S=4): completed in run A but failed in run B: "
        f"{FAILED_REASON}"
    ]
    # the other way round it is only a note: the pair is new in B
    reverse = reports.compare(broken, baseline)
    assert reverse.ok
    assert reverse.notes == [
        "1 pair(s) completed only in run B: gaussian_vae / gumbel_softmax (S=4)"]


def test_a_run_without_completed_cells_is_bad_input(baseline: Path, tmp_path: Path) -> None:
    problems = fabricate_problem_run(tmp_path / "problems")
    with pytest.raises(reports.ReportError, match="run B .* no completed cells"):
        reports.compare(baseline, problems)
    Store.open(tmp_path / "empty").close()
    with pytest.raises(reports.ReportError, match="run A .* no completed cells"):
        reports.compare(tmp_path / "empty", baseline)


def test_thresholds_are_validated() -> None:
    with pytest.raises(reports.ReportError, match="time threshold must be a ratio > 1"):
        Thresholds(time=1.0)
    with pytest.raises(reports.ReportError, match="bound threshold"):
        Thresholds(bound=-1.0)
    assert math.isclose(Thresholds().variance, 3.0)


def test_missing_run_is_bad_input(baseline: Path, tmp_path: Path) -> None:
    with pytest.raises(reports.ReportError, match="not a run directory"):
        reports.compare(baseline, tmp_path / "nowhere")


def test_runs_with_nothing_in_common_are_bad_input(baseline: Path, tmp_path: Path) -> None:
    """A regression gate that compared nothing must not pass: runs whose cells share no
    (objective, estimator, S) are refused, naming what each has."""
    other = fabricate_run(tmp_path / "other", sample_sizes=(7,))
    with pytest.raises(reports.ReportError, match="nothing to compare") as info:
        reports.compare(baseline, other)
    assert "S=7" in str(info.value) and "only in A" in str(info.value)


def test_runs_are_matched_by_stored_labels_not_by_display_labels(tmp_path: Path) -> None:
    """`reinforce` reads reinforce(baseline=none) in a run that also holds reinforce-loo and
    plain reinforce in one that does not: the two runs still share that pair."""
    from estibench.benchmarks.harness.runner import run
    from estibench.benchmarks.suites.schema import parse_suite

    suite = {"name": "labels", "seeds": [0, 1], "num_samples": [2],
             "training": {"steps": 2}, "metrics": {"checkpoints": [-1], "replicas": 8},
             "objectives": [{"name": "bernoulli_toy"}],
             "estimators": [{"name": "reinforce"},
                            {"name": "reinforce", "options": {"baseline": "loo"}}]}
    run(parse_suite(suite), out=tmp_path / "a")
    run(parse_suite({**suite, "estimators": suite["estimators"][:1]}), out=tmp_path / "b")
    assert set(reports.load(tmp_path / "a")["estimator"]) == {"reinforce(baseline=none)",
                                                             "reinforce-loo"}
    assert set(reports.load(tmp_path / "b")["estimator"]) == {"reinforce"}
    result = reports.compare(tmp_path / "a", tmp_path / "b")
    assert set(result.table["estimator"]) == {"reinforce"}  # compared, shown as B shows it
    assert any("reinforce-loo" in note for note in result.notes)  # only in A, and said so
    # shown together, one estimator has one label in both runs
    both = reports.load([tmp_path / "a", tmp_path / "b"])
    assert set(both["estimator"]) == {"reinforce(baseline=none)", "reinforce-loo"}
    # a cell of B lost (an interrupted run): the comparison says B is incomplete
    import sqlite3

    with sqlite3.connect(tmp_path / "b" / "results.sqlite") as db:
        last = db.execute("SELECT max(id) FROM cells").fetchone()[0]
        db.execute("DELETE FROM metrics WHERE cell_id = ?", (last,))
        db.execute("DELETE FROM cells WHERE id = ?", (last,))
    notes = reports.compare(tmp_path / "a", tmp_path / "b").notes
    assert any(n.startswith("run B is incomplete: 1 cell(s)") for n in notes), notes
    assert not any(n.startswith("run A is incomplete") for n in notes)
