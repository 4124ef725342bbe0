"""Executors: every executor gives the same numbers as running the cells in-process.

The tiny suite and the in-process reference are shared with tests/e2e/test_dask.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

import estibench
from estibench.benchmarks.harness.executors import InProcess, ProcessPool, make_executor
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.suites.schema import parse_suite
from tests.runs import TINY_RUN, numbers, statuses


def test_reference_covers_every_cell_and_metric_family(in_process_numbers):
    reference = in_process_numbers
    keys = set(reference.index.get_level_values("key"))
    assert len(keys) == len(expand(parse_suite(TINY_RUN)).runnable) == 12
    names = set(reference.index.get_level_values("metric"))
    for family in ("train/objective", "grad/distribution/", "grad/encoder/", "test/elbo",
                   "test/exact_objective"):
        assert any(n.startswith(family) for n in names), family


def test_process_pool_gives_the_in_process_numbers(in_process_numbers, tmp_path):
    executor = make_executor("pool", workers=2)
    assert isinstance(executor, ProcessPool)
    try:
        run_dir = estibench.run(parse_suite(TINY_RUN), out=tmp_path / "pool", device="cpu",
                                 executor=executor, report=False).run_dir
    finally:
        executor.close()
    assert len(statuses(run_dir)) == expand(parse_suite(TINY_RUN)).size
    pd.testing.assert_series_equal(numbers(run_dir), in_process_numbers, check_exact=True)


def test_make_executor_checks_its_arguments():
    assert isinstance(make_executor(), InProcess)
    with pytest.raises(ValueError, match="inprocess, pool, dask"):
        make_executor("threads")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_executor("pool", workers=0)
