"""Executors: where cells run. One interface, results streamed back as they complete.

Only the client (the process calling `estibench.run`) writes the store; executors just compute
`CellResult`s from the `CellSpec`s they are given:

- `base`: the `Executor` protocol and `InProcess`, the default (cells one after another);
- `pool`: `ProcessPool`, local worker processes (`--workers N`);
- `dask_cluster`: `DaskExecutor`, a Dask scheduler and its workers (`--executor dask`).

A new executor implements `run(cells, device)` and `close()` and is named in `make_executor`.
"""

from __future__ import annotations

from estibench.benchmarks.harness.executors.base import ALLOWED_FAILURES, Executor, InProcess
from estibench.benchmarks.harness.executors.pool import ProcessPool

__all__ = ["ALLOWED_FAILURES", "EXECUTORS", "Executor", "InProcess", "ProcessPool",
           "make_executor"]

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
