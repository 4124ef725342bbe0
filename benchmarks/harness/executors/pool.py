"""Cells on local worker processes, which die with the client and are replaced when a cell
kills one."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from estibench.benchmarks.harness.cell import failed, run_cell
from estibench.benchmarks.harness.executors.base import ALLOWED_FAILURES
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.store import CellResult


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
                 cell_function: Callable[[CellSpec, str], CellResult] = run_cell) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.allowed_failures = allowed_failures
        self.cell_function = cell_function  # top-level (picklable); tests substitute a faulty one
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                   initializer=worker_setup, initargs=(os.getpid(),))

    def run(self, cells: Iterable[CellSpec], device: str) -> Iterator[CellResult]:
        queue = deque(cells)
        suspects: deque[CellSpec] = deque()  # lost with a worker: rerun one at a time
        deaths: dict[int, int] = {}  # id(cell) -> worker deaths while it ran alone
        in_flight: dict[Future[CellResult], CellSpec] = {}
        self.interrupted = False
        try:
            while queue or suspects or in_flight:
                if suspects and not in_flight:  # alone, so a death is this cell's own
                    cell = suspects.popleft()
                    in_flight[self._submit(cell, device)] = cell
                while not suspects and queue and len(in_flight) < self.workers:
                    cell = queue.popleft()
                    in_flight[self._submit(cell, device)] = cell
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
                for future, cell in list(in_flight.items()):
                    del in_flight[future]
                    error = future.exception()
                    if error is None:
                        yield future.result()
                        continue
                    n = deaths[id(cell)] = deaths.get(id(cell), 0) + alone
                    if n > self.allowed_failures:
                        yield failed(cell, f"its worker process died while it ran alone, "
                                             f"{n} time(s) ({_last_line(error)})")
                    else:
                        suspects.append(cell)
        except KeyboardInterrupt:
            self.interrupted = True  # close() stops the workers instead of waiting for them
            raise
        finally:
            for future in in_flight:
                future.cancel()

    def _submit(self, cell: CellSpec, device: str) -> Future[CellResult]:
        """Submit a cell. The executor spawns its workers here: they are started with SIGINT
        ignored, so a Ctrl-C while one is still importing (before `worker_setup` runs) does not
        print its KeyboardInterrupt traceback; a Ctrl-C in those milliseconds is dropped."""
        if threading.current_thread() is not threading.main_thread():
            return self.pool.submit(self.cell_function, cell, device)
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
        try:
            return self.pool.submit(self.cell_function, cell, device)
        finally:
            signal.signal(signal.SIGINT, handler)

    def close(self) -> None:
        if getattr(self, "interrupted", False):
            # Ctrl-C: the cells in flight are abandoned (resume reruns them), not waited for
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
            self.pool.shutdown(wait=False, cancel_futures=True)
            return
        self.pool.shutdown(wait=True, cancel_futures=True)


def worker_setup(parent: int) -> None:
    """Pool initializer: the client alone answers Ctrl-C (the terminal sends SIGINT to every
    process of the group; a worker would print its own KeyboardInterrupt traceback), and the
    worker exits when the client is gone (`die_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)
    warm_up()


# The smallest cell: a toy, two training steps, a few replicas, no timing.
_WARM_UP = {"name": "warm-up", "seeds": [0], "num_samples": [2], "training": {"steps": 2},
            "metrics": {"checkpoints": [-1], "replicas": 4, "throughput": False},
            "objectives": [{"name": "bernoulli_toy"}],
            "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}]}


def warm_up() -> None:
    """Pay a process's one-time costs before its first cell (lazy imports: torch.func's first
    call imports dynamo, the optimizer's first step more), by running the smallest cell and
    storing nothing. Counted in the first cell's run time they made the ETA, which is learnt
    from run times, ten times too long on a fresh pool."""
    from estibench.benchmarks.harness.plan import expand
    from estibench.benchmarks.suites.schema import parse_suite

    run_cell(expand(parse_suite(_WARM_UP)).runnable[0], "cpu")


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
