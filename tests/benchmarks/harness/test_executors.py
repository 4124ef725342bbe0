"""Executors: every executor gives the same numbers as running the cells in-process.

`SUITE`, `reference_numbers` and `numbers` are shared with tests/e2e/test_dask.py.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import estibench
from estibench.benchmarks.harness.executors import InProcess, ProcessPool, make_executor
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

# Small on purpose (12 cells of a fraction of a second): two seeds, a toy and a tiny VAE, and
# an unbiased, a relaxed and the exact estimator; every metric family is measured.
SUITE = {
    "name": "executors",
    "seeds": [0, 1],
    "num_samples": [2],
    "training": {"steps": 6, "batch_size": 16, "log_every": 2},
    "metrics": {"checkpoints": [0, -1], "replicas": 8, "eval_batch_size": 8,
                "bounds_examples": 16, "iwae_ks": [1, 4], "throughput_min_run_time": 0.01},
    "objectives": [
        {"name": "bernoulli_toy"},
        {"name": "categorical_vae", "options": {"variables": 2, "categories": 2, "hidden": 8}},
    ],
    "estimators": [
        {"name": "reinforce", "options": {"baseline": "loo"}},
        {"name": "gumbel_softmax"},
        {"name": "exact"},
    ],
}
# Timings differ from run to run; everything else must not.
TIMINGS = ("time/", "train/seconds", "train/load_1min", "efficiency/")  # vary by run


def numbers(run_dir: Path) -> pd.Series:
    """Every metric value of a run but the timings, indexed by (cell key, step, metric)."""
    with Store.open(run_dir, create=False) as store:
        frame = store.tidy()
    keep = ~frame["metric"].str.startswith(TIMINGS)
    return frame[keep].set_index(["key", "step", "metric"])["value"].sort_index()


def statuses(run_dir: Path) -> pd.Series:
    """Status of every cell of a run, by key."""
    with Store.open(run_dir, create=False) as store:
        cells = store.cells()
        assert store.integrity_ok()
    assert cells["key"].is_unique
    return cells.set_index("key")["status"].sort_index()


@functools.cache
def reference_numbers() -> pd.Series:
    """SUITE run in-process (once per test session)."""
    root = Path(tempfile.mkdtemp(prefix="estibench-reference-"))
    try:
        run_dir = estibench.run(parse_suite(SUITE), out=root / "run", device="cpu",
                                 report=False).run_dir
        assert (statuses(run_dir) != "failed").all()
        return numbers(run_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_reference_covers_every_cell_and_metric_family():
    reference = reference_numbers()
    keys = set(reference.index.get_level_values("key"))
    assert len(keys) == len(expand(parse_suite(SUITE)).runnable) == 12
    names = set(reference.index.get_level_values("metric"))
    for family in ("train/objective", "grad/distribution/", "grad/encoder/", "test/elbo",
                   "test/exact_objective"):
        assert any(n.startswith(family) for n in names), family


def test_process_pool_gives_the_in_process_numbers(tmp_path):
    executor = make_executor("pool", workers=2)
    assert isinstance(executor, ProcessPool)
    try:
        run_dir = estibench.run(parse_suite(SUITE), out=tmp_path / "pool", device="cpu",
                                 executor=executor, report=False).run_dir
    finally:
        executor.close()
    assert len(statuses(run_dir)) == expand(parse_suite(SUITE)).size
    pd.testing.assert_series_equal(numbers(run_dir), reference_numbers(), check_exact=True)


def test_make_executor_checks_its_arguments():
    assert isinstance(make_executor(), InProcess)
    with pytest.raises(ValueError, match="inprocess, pool, dask"):
        make_executor("threads")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_executor("pool", workers=0)
