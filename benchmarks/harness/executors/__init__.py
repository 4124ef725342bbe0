"""Executors: where cells run. One interface, results streamed back as they complete.

Only the client (the process calling `estibench.run`) writes the store; executors just compute
`CellResult`s from the `CellSpec`s they are given:

- `base`: the `Executor` protocol and `InProcess`, the default (cells one after another);
- `pool`: `ProcessPool`, local worker processes (`--workers N`);
- `dask_cluster`: `DaskExecutor`, a Dask scheduler and its workers (`--executor dask`), or
  the Dask cluster of a SLURM allocation, every task of an `srun` taking a role
  (`--scheduler slurm-runner`);
- `submitit_cluster`: `SubmititExecutor`, SLURM job arrays through submitit, or the same path on
  this machine (`--executor submitit --cluster slurm|local`).

A new executor implements `run(cells, device)` and `close()` and is named in `make_executor`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from estibench.benchmarks.harness.executors.base import (
    ALLOWED_FAILURES,
    Executor,
    ExecutorError,
    InProcess,
)
from estibench.benchmarks.harness.executors.pool import ProcessPool

__all__ = ["ALLOWED_FAILURES", "EXECUTORS", "Executor", "ExecutorError", "InProcess",
           "ProcessPool", "make_executor"]

EXECUTORS = ("inprocess", "pool", "dask", "submitit")
_FLAGS = {"time_min": "--time", "mem_gb": "--mem"}  # the CLI's names where they differ


def make_executor(
    kind: str = "inprocess",
    *,
    workers: int = 1,
    scheduler: str | None = None,
    local_workers: int | None = None,
    dashboard: bool = False,
    cluster: str | None = None,
    cluster_options: Mapping[str, Any] | None = None,
) -> Executor:
    """The executor named `kind`: inprocess, pool (`workers` processes), dask (a running
    scheduler at `scheduler`, the cluster of a SLURM allocation with `scheduler="slurm-runner"`,
    or a LocalCluster of `local_workers` processes on 127.0.0.1) or submitit (`cluster` slurm
    or local, with `cluster_options`: `SubmititExecutor`'s partition, time_min, mem_gb, gpus,
    account, task_minutes, array_parallelism; the run's `[cluster]` table fills in the rest)."""
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    options = {k: v for k, v in (cluster_options or {}).items() if v is not None}
    if kind != "submitit" and (cluster is not None or options):
        named = "cluster" if cluster is not None else next(iter(options))
        raise ExecutorError(f"{_FLAGS.get(named, '--' + named.replace('_', '-'))} applies to "
                            f"--executor submitit, not --executor {kind}")
    if kind == "pool":
        return ProcessPool(workers)
    if kind == "dask":
        from estibench.benchmarks.harness.executors.dask_cluster import DaskExecutor

        return DaskExecutor(scheduler=scheduler, local_workers=local_workers,
                            dashboard=dashboard)
    if kind == "submitit":
        from estibench.benchmarks.harness.executors.submitit_cluster import SubmititExecutor

        if cluster is None:
            raise ExecutorError("--executor submitit needs --cluster slurm (job arrays on a "
                                "SLURM cluster) or --cluster local (the same on this machine)")
        return SubmititExecutor(cluster, **options)
    return InProcess()
