"""Executors: where cells run. One interface, results streamed back as they complete.

Only the client (the process calling `estibench.run`) writes the store; executors just
compute `CellResult`s. `InProcess` is the default; `ProcessPool` uses local worker processes.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Protocol

from estibench.benchmarks.harness.cell import failed, run_cell
from estibench.benchmarks.results.store import CellResult

# Worker deaths a cell may cause before it is failed (the Dask executor's default too).
ALLOWED_FAILURES = 3


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
    """Cells on `workers` local processes (spawned: no state inherited from the client).

    Workers exit when the client dies (even by SIGKILL), so none is left running. A worker that
    dies mid-cell (killed, out of memory) breaks the pool and loses the cells in flight: the
    pool is rebuilt and those cells are run again one at a time, so that a death is blamed on
    the cell that caused it; a cell whose worker dies more than `allowed_failures` times while
    it runs alone is failed with the reason (as the Dask executor does).
    """

    local = True

    def __init__(self, workers: int, allowed_failures: int = ALLOWED_FAILURES, *,
                 cell_function: Callable[[dict[str, Any], str], CellResult] = run_cell) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.allowed_failures = allowed_failures
        self.cell_function = cell_function  # top-level (picklable); tests substitute a faulty one
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))

    def run(self, configs: Iterable[dict[str, Any]], device: str) -> Iterator[CellResult]:
        queue = deque(configs)
        suspects: deque[dict[str, Any]] = deque()  # lost with a worker: rerun one at a time
        deaths: dict[int, int] = {}  # id(config) -> worker deaths while it ran alone
        in_flight: dict[Future[CellResult], dict[str, Any]] = {}
        try:
            while queue or suspects or in_flight:
                if suspects and not in_flight:  # alone, so a death is this cell's own
                    config = suspects.popleft()
                    in_flight[self.pool.submit(self.cell_function, config, device)] = config
                while not suspects and queue and len(in_flight) < self.workers:
                    config = queue.popleft()
                    in_flight[self.pool.submit(self.cell_function, config, device)] = config
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                if not any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    for future in done:
                        del in_flight[future]
                        yield future.result()
                    continue
                # A worker died: the pool is broken and every cell in flight lost with it.
                alone = len(in_flight) == 1
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = self._start()
                for future, config in list(in_flight.items()):
                    del in_flight[future]
                    error = future.exception()
                    if error is None:
                        yield future.result()
                        continue
                    n = deaths[id(config)] = deaths.get(id(config), 0) + alone
                    if n > self.allowed_failures:
                        yield failed(config, f"its worker process died while it ran alone, "
                                             f"{n} time(s) ({_last_line(error)})")
                    else:
                        suspects.append(config)
        finally:
            for future in in_flight:
                future.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def die_with_parent(parent: int, interval: float = 0.5) -> None:
    """Pool initializer: exit this worker as soon as `parent` is gone (its parent pid changes
    when the parent dies, however it died). A daemon thread, so it never holds the worker up."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _last_line(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()


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
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if kind == "pool":
        return ProcessPool(workers)
    if kind == "dask":
        from estibench.benchmarks.harness.executors.dask_cluster import DaskExecutor

        return DaskExecutor(scheduler=scheduler, local_workers=local_workers,
                            dashboard=dashboard)
    return InProcess()
