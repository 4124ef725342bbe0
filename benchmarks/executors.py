"""Executors: where cells run. One interface, results streamed back as they complete.

Only the client (the process calling `benchmarks.run`) writes the store; executors just
compute `CellResult`s. `InProcess` is the default; `ProcessPool` uses local worker processes.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Protocol

from benchmarks.cell import failed, run_cell
from benchmarks.store import CellResult

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
    dies mid-cell (killed, out of memory) breaks the pool: the pool is rebuilt and the cells that
    were running are run again, each at most `allowed_failures` times, after which it is failed
    with the reason (as the Dask executor does). At most `workers` cells are in flight, so the
    cells lost with a worker are exactly the ones that were running.
    """

    local = True

    def __init__(self, workers: int, allowed_failures: int = ALLOWED_FAILURES) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.allowed_failures = allowed_failures
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))

    def run(self, configs: Iterable[dict[str, Any]], device: str) -> Iterator[CellResult]:
        queue = deque(configs)
        deaths: dict[int, int] = {}  # id(config) -> worker deaths while it ran
        in_flight: dict[Future[CellResult], dict[str, Any]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.workers:
                    config = queue.popleft()
                    in_flight[self.pool.submit(run_cell, config, device)] = config
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                if not any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    for future in done:
                        del in_flight[future]
                        yield future.result()
                    continue
                # A worker died: the pool is broken and every cell in flight lost with it.
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = self._start()
                for future, config in list(in_flight.items()):
                    del in_flight[future]
                    error = future.exception()
                    if error is None:
                        yield future.result()
                        continue
                    deaths[id(config)] = n = deaths.get(id(config), 0) + 1
                    if n > self.allowed_failures:
                        yield failed(config, f"its worker process died {n} times while it "
                                             f"ran ({_last_line(error)})")
                    else:
                        queue.appendleft(config)
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
        from benchmarks.dask_executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, local_workers=local_workers,
                            dashboard=dashboard)
    return InProcess()
