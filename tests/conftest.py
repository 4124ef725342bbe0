"""Shared test setup."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    """The tests see estibench's own estimators and objectives only, whatever is installed
    beside it (a third-party plugin would change what `available()` lists). Set before
    collection, which parametrizes over the registries; the plugin tests start processes of
    their own with the plugin on the path."""
    from estibench import estimators
    from estibench.benchmarks import objectives

    estimators.registry.ignore_installed_plugins()
    objectives.registry.ignore_installed_plugins()


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread while a module's tests run (restored afterwards). The tests run many
    tiny tensor operations, where extra threads only synchronise; on a machine whose cores are
    shared they spin and make the statistical tests several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def in_process_numbers(tmp_path_factory: pytest.TempPathFactory) -> pd.Series:
    """`tests.runs.TINY_RUN` run in-process once per session: every metric value but the
    timings, by (cell key, step, metric)."""
    import estibench
    from estibench.benchmarks.suites.schema import parse_suite
    from tests.runs import TINY_RUN, numbers, statuses

    out = tmp_path_factory.mktemp("in-process") / "run"
    run_dir = estibench.run(parse_suite(TINY_RUN), out=out, device="cpu", report=False).run_dir
    assert (statuses(run_dir) != "failed").all()
    return numbers(run_dir)
