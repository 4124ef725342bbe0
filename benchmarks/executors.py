"""Executors: where cells run. One interface, results streamed back as they complete.

Only the client (the process calling `benchmarks.run`) writes the store; executors just
compute `CellResult`s. `InProcess` is the default; `ProcessPool` uses local worker processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Protocol

from benchmarks.cell import run_cell
from benchmarks.store import CellResult


class Executor(Protocol):
    """Runs `run_cell(config, device)` for each config, yielding results in completion order.

    `local` says whether cells run on this machine (so the client can check the device)."""

    local: bool

    def run(self, configs: Iterable[dict[str, Any]], device: str) -> Iterator[CellResult]: ...

    def close(self) -> None: ...


class InProcess:
    """Cells one after another in this process."""

    local = True

    def run(self, configs: Iterable[dict[str, Any]], device: str) -> Iterator[CellResult]:
        for config in configs:
            yield run_cell(config, device)

    def close(self) -> None:
        pass


class ProcessPool:
    """Cells on `workers` local processes (spawned: no state inherited from the client)."""

    local = True

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))

    def run(self, configs: Iterable[dict[str, Any]], device: str) -> Iterator[CellResult]:
        futures = [self.pool.submit(run_cell, config, device) for config in configs]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


EXECUTORS = ("inprocess", "pool", "dask")


def make_executor(
    kind: str = "inprocess",
    *,
    workers: int = 1,
    scheduler: str | None = None,
    local_workers: int | None = None,
    dashboard: bool = False,
) -> Executor:
    """The executor named `kind`: inprocess, pool (`workers` processes) or dask (a running
    scheduler at `scheduler`, or a LocalCluster of `local_workers` processes on 127.0.0.1)."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if workers < 1:
        raise ValueError(f"--workers must be an integer >= 1, got {workers}")
    if kind == "pool":
        return ProcessPool(workers)
    if kind == "dask":
        from benchmarks.dask_executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, local_workers=local_workers,
                            dashboard=dashboard)
    return InProcess()
