"""The executor protocol, and the in-process executor every run defaults to."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.store import CellResult

# Worker deaths a cell may cause before it is failed (pool and Dask). A death is usually not
# the cell's fault (preemption, a neighbour's OOM), but a cell that kills every worker it
# touches (segfault, its own OOM) must not restart workers forever.
ALLOWED_FAILURES = 3


class ExecutorError(ValueError):
    """The executor cannot start: bad options, a missing package or an unreachable cluster
    (bad input, exit 2)."""


class Executor(Protocol):
    """Runs `run_cell(spec, device)` for each cell, yielding results in completion order.

    `local` says whether cells run on this machine (so the client can check the device). An
    executor that keeps files in the run directory (the submitit executor: its job ids, logs
    and the cells' results) also has `attach(run_dir)`, which the runner calls once the run
    directory is claimed, before `run`."""

    local: bool

    def run(self, cells: Iterable[CellSpec], device: str) -> Iterator[CellResult]: ...

    def close(self) -> None: ...


class InProcess:
    """Cells one after another in this process."""

    local = True

    def run(self, cells: Iterable[CellSpec], device: str) -> Iterator[CellResult]:
        for cell in cells:
            yield run_cell(cell, device)

    def close(self) -> None:
        """Nothing to release: the cells ran in this process."""
