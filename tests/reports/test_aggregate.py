"""estibench.reports.aggregate: loading run directories and aggregating over seeds, checked by
hand."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from estibench import reports
from estibench.benchmarks.results.store import CellResult, Store, cell_key
from estibench.reports.aggregate import CONFIG_COLUMNS, FRAME_COLUMNS, final_values
from estibench.reports.figures.palette import estimator_palette
from tests.reports.fabricate import (
    ENVIRONMENT,
    FAILED_REASON,
    IWAE_KS,
    NOT_APPLICABLE_REASON,
    SEEDS,
    STEPS,
    cell_config,
    estimator,
    fabricate_problem_run,
    fabricate_run,
    final_elbo,
    objective,
    peak_memory,
    time_per_estimate,
    total_variance,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fabricate_run(tmp_path_factory.mktemp("run") / "fabricated-run")


@pytest.fixture(scope="module")
def frame(run: Path) -> pd.DataFrame:
    return reports.load(run)


@pytest.fixture(scope="module")
def summary(frame: pd.DataFrame) -> pd.DataFrame:
    return reports.summary_table(frame).set_index(["objective", "estimator"])


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The oracle: textbook mean and standard error of the mean."""
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


# -- load ------------------------------------------------------------------------------------


def test_load_is_tidy_with_config_columns(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(FRAME_COLUMNS)
    for column in ("objective", "estimator", "estimator_name", "seed", "num_samples", "kl",
                   "protocol", "trained_with", "device"):
        assert column in frame.columns
    assert set(frame["run"]) == {"fabricated-run"}
    assert set(frame["device"]) == {ENVIRONMENT["device"]}
    # one row per (cell, step, metric)
    assert not frame.duplicated(["run", "cell_id", "step", "metric"]).any()
    # not-applicable cells have no metric rows; the failed cell keeps its partial curves
    assert set(frame["status"]) == {"ok", "failed"}
    failed = frame[frame["status"] == "failed"]
    assert failed["step"].max() < STEPS


def test_load_several_runs_has_a_run_column(tmp_path: Path, run: Path) -> None:
    other = fabricate_problem_run(tmp_path / "other-run")
    frame = reports.load([run, other])
    assert set(frame["run"]) == {"fabricated-run", "other-run"}
    summary = reports.summary_table(frame)
    assert "run" in summary.columns  # runs are never pooled
    assert set(summary["run"]) == {"fabricated-run"}  # the other run has no ok cell


def test_load_cells_keeps_every_cell(run: Path) -> None:
    cells = reports.load_cells(run)
    assert len(cells) == 18
    assert set(CONFIG_COLUMNS) <= set(cells.columns)
    na = cells[cells["status"] == "not_applicable"]
    assert set(na["reason"]) == {NOT_APPLICABLE_REASON}
    assert all(env == {} for env in na["environment"])


def test_load_rejects_a_directory_without_store(tmp_path: Path) -> None:
    with pytest.raises(reports.ReportError, match="no results.sqlite"):
        reports.load(tmp_path)
    assert not (tmp_path / "results.sqlite").exists()  # reading never creates a store


# -- summary ---------------------------------------------------------------------------------


def test_summary_means_and_standard_errors_by_hand(summary: pd.DataFrame) -> None:
    o, e = objective("bernoulli_vae"), estimator("gumbel_softmax")
    row = summary.loc[("bernoulli_vae", "gumbel_softmax")]
    assert row["seeds"] == 3
    elbo = [final_elbo(o, e, s) for s in SEEDS]
    assert (row["elbo_mean"], row["elbo_se"]) == pytest.approx(mean_and_se(elbo))
    ms = [1e3 * time_per_estimate(e, s) for s in SEEDS]
    assert (row["time_per_estimate_ms_mean"], row["time_per_estimate_ms_se"]) == pytest.approx(
        mean_and_se(ms))
    log10_var = [math.log10(total_variance(e, s, STEPS, "distribution")) for s in SEEDS]
    assert (row["log10_var_distribution_mean"], row["log10_var_distribution_se"]) == \
        pytest.approx(mean_and_se(log10_var))
    log10_enc = [math.log10(total_variance(e, s, STEPS, "encoder")) for s in SEEDS]
    assert row["log10_var_encoder_mean"] == pytest.approx(statistics.fmean(log10_enc))
    mib = [peak_memory(e, s) / 2**20 for s in SEEDS]
    assert row["peak_memory_mib_mean"] == pytest.approx(statistics.fmean(mib))
    vxt = [total_variance(e, s, STEPS, "distribution") * time_per_estimate(e, s) for s in SEEDS]
    assert row["variance_x_time_mean"] == pytest.approx(statistics.fmean(vxt))
    assert row["cosine_distribution_mean"] == pytest.approx(1 - e.bias)
    assert (row["replicas_distribution_min"], row["replicas_distribution_max"]) == (128, 128)
    assert row["log10_var_distribution_unmet"] == 0
    loo = summary.loc[("bernoulli_vae", "reinforce-loo")]  # seed 0 ran to the cap
    assert (loo["replicas_distribution_min"], loo["replicas_distribution_max"]) == (128, 4096)
    assert loo["log10_var_distribution_unmet"] == 1
    assert row["gap_mean"] == pytest.approx(o.log_px - o.elbo)
    for k in IWAE_KS:
        assert row[f"iwae_{k}_mean"] == pytest.approx(statistics.fmean(elbo) + math.log10(k))


def test_summary_uses_the_final_checkpoint_not_the_first(summary: pd.DataFrame) -> None:
    e = estimator("reinforce-loo")
    first = statistics.fmean(math.log10(total_variance(e, s, 0, "distribution")) for s in SEEDS)
    row = summary.loc[("bernoulli_vae", "reinforce-loo")]
    assert row["log10_var_distribution_mean"] != pytest.approx(first)


def test_summary_leaves_out_failed_and_not_applicable_cells(summary: pd.DataFrame) -> None:
    o, e = objective("gaussian_vae"), estimator("reinforce-loo")
    row = summary.loc[("gaussian_vae", "reinforce-loo")]
    assert row["seeds"] == 2  # seed 2 failed
    assert (row["elbo_mean"], row["elbo_se"]) == pytest.approx(
        mean_and_se([final_elbo(o, e, s) for s in (0, 1)]))
    assert ("bernoulli_vae", "pathwise") not in summary.index


def test_summary_has_no_exact_metrics_where_none_exist(summary: pd.DataFrame) -> None:
    row = summary.loc[("gaussian_vae", "pathwise")]
    assert "bias_distribution_mean" not in row.index  # the noise-dominated bias norm is gone
    assert math.isnan(row["cosine_distribution_mean"])
    assert math.isnan(row["exact_objective_mean"])


def test_summary_splits_by_num_samples_when_several(tmp_path: Path) -> None:
    frame = reports.load(fabricate_run(tmp_path / "sizes", sample_sizes=(1, 4)))
    summary = reports.summary_table(frame)
    assert "num_samples" in summary.columns
    row = summary.set_index(["objective", "estimator", "num_samples"]).loc[
        ("gaussian_vae", "pathwise", 1)]
    e = estimator("pathwise")
    expected = statistics.fmean(
        math.log10(total_variance(e, s, STEPS, "distribution", num_samples=1)) for s in SEEDS)
    assert row["log10_var_distribution_mean"] == pytest.approx(expected)


def test_single_seed_has_no_standard_error(tmp_path: Path) -> None:
    o, e = objective("gaussian_vae"), estimator("pathwise")
    with Store.open(tmp_path) as store:
        run_id = store.start_run("one", {}, ENVIRONMENT)
        config = cell_config(o, e, 0)
        store.write_cell(run_id, CellResult(cell_key(config), config, "ok", None, 0.0, 1.0,
                                            ENVIRONMENT, [(0, "test/elbo", -3.0)]))
    summary = reports.summary_table(reports.load(tmp_path))
    assert summary.loc[0, "elbo_mean"] == -3.0
    assert math.isnan(summary.loc[0, "elbo_se"])
    # absent metrics are simply absent columns
    assert "time_per_estimate_ms_mean" not in summary.columns


def test_nan_values_are_left_out(tmp_path: Path) -> None:
    o, e = objective("gaussian_vae"), estimator("pathwise")
    with Store.open(tmp_path) as store:
        run_id = store.start_run("nan", {}, ENVIRONMENT)
        for seed, value in ((0, -3.0), (1, float("nan")), (2, -5.0)):
            config = cell_config(o, e, seed)
            store.write_cell(run_id, CellResult(cell_key(config), config, "ok", None, 0.0, 1.0,
                                                ENVIRONMENT, [(0, "test/elbo", value)]))
    summary = reports.summary_table(reports.load(tmp_path))
    assert (summary.loc[0, "elbo_mean"], summary.loc[0, "elbo_se"]) == pytest.approx(
        mean_and_se([-3.0, -5.0]))


def test_empty_and_problem_only_runs(tmp_path: Path) -> None:
    Store.open(tmp_path / "empty").close()
    for run_dir in (tmp_path / "empty", fabricate_problem_run(tmp_path / "problems")):
        frame = reports.load(run_dir)
        assert reports.summary_table(frame).empty
        assert final_values(frame).empty
    assert reports.problems(tmp_path / "empty").empty


# -- problems --------------------------------------------------------------------------------


def test_problems_lists_failed_then_not_applicable(run: Path) -> None:
    table = reports.problems(run)
    assert list(table.columns) == ["status", "objective", "estimator", "num_samples", "seeds",
                                   "reason"]
    assert table.to_dict("records") == [
        {"status": "failed", "objective": "gaussian_vae", "estimator": "reinforce-loo",
         "num_samples": "4", "seeds": "2", "reason": FAILED_REASON},
        {"status": "not_applicable", "objective": "bernoulli_vae", "estimator": "pathwise",
         "num_samples": "4", "seeds": "0, 1, 2", "reason": NOT_APPLICABLE_REASON},
    ]


def test_problems_collapse_sizes_that_share_seeds(tmp_path: Path) -> None:
    run = fabricate_run(tmp_path, sample_sizes=(1, 2, 8))
    table = reports.problems(run).set_index("status")
    assert table.loc["not_applicable", "num_samples"] == "1, 2, 8"
    assert table.loc["not_applicable", "seeds"] == "0, 1, 2"
    assert table.loc["failed", "num_samples"] == "1, 2, 8"
    assert table.loc["failed", "seeds"] == "2"


# -- palette ---------------------------------------------------------------------------------


def test_palette_depends_on_each_label_only() -> None:
    a = estimator_palette(["pathwise", "reinforce-loo", "gumbel_softmax"])
    b = estimator_palette(["gumbel_softmax", "pathwise", "reinforce-loo", "pathwise", "exact"])
    assert all(b[label] == colour for label, colour in a.items())  # other labels change nothing
    assert len(set(a.values())) == 3
