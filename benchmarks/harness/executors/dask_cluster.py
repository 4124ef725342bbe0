"""The Dask executor: cells as tasks on a Dask cluster, results streamed back as they complete.

    DaskExecutor(scheduler="tcp://10.0.0.5:8786")  # a running cluster (dask scheduler/workers)
    DaskExecutor(local_workers=4)                  # a LocalCluster of 4 processes on 127.0.0.1
    DaskExecutor(scheduler="slurm-runner")         # inside a SLURM allocation, under srun

In a SLURM allocation (`srun estibench run ... --scheduler slurm-runner`), every task of the
job runs the same command and dask-jobqueue's `SLURMRunner` gives each its role by
SLURM_PROCID: task 0 the scheduler (it writes its address in a scheduler file in the working
directory, `estibench-dask-<job id>.json`, or the file named by `slurm-runner:FILE`), task 1 the
client (the run: it alone writes the store), the others one single-threaded worker each. The
scheduler's and the workers' constructor returns only when the client has closed the cluster,
and then their process exits (status 0). Nothing runs on a login node.

Each cell is one task, `run_cell(spec, device)`, keyed `cell-<cell key>`. Only the client
writes the store (the runner does, with what `run` yields), so the cluster needs no access to
the run directory, only the same `estibench` installation on every worker.

Faults:
- a worker that dies mid-cell: the scheduler reruns the cell elsewhere; after more than
  `allowed_failures` deaths it gives up (KilledWorker). Each cell is yielded at most once.
- a task that raises on a worker (KilledWorker, a worker that cannot import the harness, ...):
  yielded as a failed cell whose reason is the exception's last line; the run goes on.
- a scheduler that cannot be reached within `connect_timeout`: `ExecutorError` (a ValueError,
  so the CLI exits 2 with the message).

Cells on CUDA need a worker that declares the resource, `dask worker ... --resources GPU=1`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any

from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.executors.base import ALLOWED_FAILURES, ExecutorError
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.store import CellResult

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

__all__ = ["ALLOWED_FAILURES", "GPU", "SCHEDULER_FILE", "SLURM_RUNNER", "DaskExecutor",
           "ExecutorError", "failed_cell", "needs_gpu"]

GPU = "GPU"  # the worker resource a CUDA cell asks for: `dask worker --resources GPU=1`
# Reruns of a task that *raised* (run_cell never raises for a failing cell, so these are
# environment problems such as a worker that cannot import the harness: another worker may do).
RETRIES = 1
DASHBOARD_ADDRESS = "127.0.0.1:8787"
SLURM_RUNNER = "slurm-runner"  # --scheduler slurm-runner[:FILE]: dask-jobqueue's SLURMRunner
SCHEDULER_FILE = "estibench-dask-{job_id}.json"  # its default scheduler file ({job_id} filled)
SLURM_TASKS = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID")  # what srun tells each task
WORKERS_TIMEOUT = 300.0  # seconds the client waits for the allocation's workers to connect

CellFunction = Callable[[dict[str, Any], str], CellResult]


def needs_gpu(device: str) -> bool:
    """Whether cells on `device` must run on a worker with a GPU (cuda, cuda:N)."""
    return device == "cuda" or device.startswith("cuda:")


def _last_line(error: BaseException) -> str:
    """'Type: message', the last line of a traceback (as run_cell words its own failures)."""
    return traceback.format_exception_only(type(error), error)[-1].strip()


def failed_cell(cell: CellSpec, error: BaseException) -> CellResult:
    """The record of a cell whose task raised on the cluster (it never produced a result)."""
    now = time.time()
    return CellResult(key=cell.key, config=cell.to_json(), status="failed",
                      reason=_last_line(error), started=now, finished=now,
                      environment={"executor": "dask"}, metrics=[])


def _slurm_runner_class() -> Any:
    """dask-jobqueue's SLURMRunner, or a clear error naming the extra to install. Importing it
    sets a SIGINT handler of its own: the one there was is kept."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        from dask_jobqueue.slurm import SLURMRunner
    except ImportError as err:
        raise ExecutorError(f"--scheduler {SLURM_RUNNER} needs dask-jobqueue: pip install "
                            f"'estibench[cluster]' ({err})") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    return SLURMRunner


def _is_slurm_runner(scheduler: str | None) -> bool:
    return scheduler is not None and (scheduler == SLURM_RUNNER
                                      or scheduler.startswith(f"{SLURM_RUNNER}:"))


def _distributed() -> Any:
    """The `distributed` module, or a clear error naming the package to install."""
    try:
        import distributed
    except ImportError as err:
        raise ExecutorError("--executor dask needs Dask: pip install 'estibench[dask]' "
                            f"({err})") from None
    return distributed


class DaskExecutor:
    """Cells on a Dask cluster: a running scheduler at `scheduler` (tcp://HOST:PORT), the
    cluster of a SLURM allocation (`scheduler="slurm-runner"` or `"slurm-runner:FILE"`, in
    every task of an `srun`: see the module's docstring), or a LocalCluster of `local_workers`
    single-threaded processes on 127.0.0.1. Exactly one of the two must be given.

    dashboard: serve the local cluster's dashboard on 127.0.0.1:8787 (needs bokeh).
    connect_timeout: seconds to wait for a running scheduler before `ExecutorError`.
    allowed_failures: worker deaths a cell may cause before it fails with KilledWorker (applies
        to the local cluster; a running scheduler uses its own
        `distributed.scheduler.allowed-failures`).
    retries: reruns of a task that raised on a worker.
    cell_function: what runs one cell on a worker: a top-level (picklable) function with
        `run_cell`'s signature; tests substitute a faulty one.
    """

    local = False  # cells run on the workers: they, not the client, must have the device

    def __init__(
        self,
        scheduler: str | None = None,
        local_workers: int | None = None,
        dashboard: bool = False,
        connect_timeout: float = 10.0,
        *,
        allowed_failures: int = ALLOWED_FAILURES,
        retries: int = RETRIES,
        cell_function: CellFunction = run_cell,
    ) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ExecutorError(
                "--executor dask needs exactly one of --scheduler tcp://HOST:PORT (a running "
                "Dask scheduler) or --local-workers N (start N local worker processes); got "
                + ("both" if scheduler is not None else "neither"))
        if local_workers is not None and local_workers < 1:
            raise ExecutorError(f"--local-workers must be >= 1, got {local_workers}")
        if scheduler is not None and dashboard and not _is_slurm_runner(scheduler):
            raise ExecutorError("--dashboard serves the dashboard of a local cluster "
                                "(--local-workers); a running scheduler serves its own")
        if connect_timeout <= 0:
            raise ExecutorError(f"connect_timeout must be > 0 seconds, got {connect_timeout}")
        if allowed_failures < 0 or retries < 0:
            raise ExecutorError(f"allowed_failures and retries must be >= 0, got "
                                f"{allowed_failures} and {retries}")
        distributed = _distributed()
        # A local cluster's workers share this machine: the client can check the device (a
        # CUDA cell on a CPU-only machine would wait forever for a GPU worker).
        self.local = local_workers is not None
        self.retries = retries
        self.dashboard = dashboard
        self.cell_function = cell_function
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.runner: Any = None  # the SLURMRunner, on the client's task of an allocation
        if _is_slurm_runner(scheduler):
            assert scheduler is not None
            self._start_slurm_runner(distributed, scheduler, dashboard, allowed_failures,
                                     connect_timeout)
        elif scheduler is not None:
            self.client = self._connect(distributed, scheduler, connect_timeout)
        else:
            assert local_workers is not None
            self._start_local(distributed, local_workers, dashboard, allowed_failures)

    @staticmethod
    def _connect(distributed: Any, address: str, timeout: float) -> Client:
        async def handshake() -> None:
            comm = await distributed.comm.connect(address, timeout=timeout)
            await comm.close()

        try:
            # Probe first: a Client that fails to connect lingers and, when collected, spends
            # another 2 x timeout closing itself and prints a traceback. A thread of its own
            # keeps this usable where an event loop is already running (notebooks).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, handshake()).result()
            return distributed.Client(address, timeout=timeout, set_as_default=False)
        except ValueError as err:  # not an address
            raise ExecutorError(f"--scheduler {address!r} is not a Dask scheduler address "
                                f"({_last_line(err)}); expected tcp://HOST:PORT") from None
        except Exception as err:  # OSError, TimeoutError: nobody answers there
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
                f"({_last_line(err)}); start one with `dask scheduler` and pass its address "
                "as --scheduler tcp://HOST:PORT") from None

    def _start_slurm_runner(self, distributed: Any, scheduler: str, dashboard: bool,
                            allowed_failures: int, connect_timeout: float) -> None:
        """Take this task's role in the allocation's cluster. The scheduler's and the workers'
        tasks stay here until the client closes the cluster, then exit."""
        runner_class = _slurm_runner_class()
        missing = [name for name in SLURM_TASKS if not os.environ.get(name)]
        if missing:
            raise ExecutorError(
                f"--scheduler {SLURM_RUNNER} runs inside a SLURM allocation, as the command "
                "of srun (each task takes a role: scheduler, client or worker); "
                f"{', '.join(missing)} not set here: submit it with sbatch (see the cluster "
                "guide), or use --local-workers N on this machine")
        try:
            tasks = int(os.environ["SLURM_NTASKS"])
        except ValueError:
            tasks = 0
        if tasks < 3:
            raise ExecutorError(
                f"--scheduler {SLURM_RUNNER} needs at least 3 SLURM tasks (a scheduler, the "
                f"client and one worker or more), got SLURM_NTASKS="
                f"{os.environ['SLURM_NTASKS']!r}: give sbatch --ntasks=3 or more")
        _, _, path = scheduler.partition(":")
        scheduler_options: dict[str, Any] = {
            "allowed_failures": allowed_failures,
            "dashboard_address": ":8787" if dashboard else ":0"}
        worker_options: dict[str, Any] = {"nthreads": 1}
        if (resources := self._local_resources()) is not None:
            worker_options["resources"] = resources
        previous = signal.getsignal(signal.SIGINT)
        # The scheduler and the workers end by sending themselves SIGINT: leave quietly.
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
        try:
            self.runner = runner_class(scheduler_file=path or SCHEDULER_FILE,
                                       scheduler_options=scheduler_options,
                                       worker_options=worker_options)
        except Exception as err:
            raise ExecutorError(f"cannot start the Dask cluster of SLURM job "
                                f"{os.environ['SLURM_JOB_ID']}: {_last_line(err)}") from None
        finally:
            signal.signal(signal.SIGINT, previous)
        # Only the client's task gets here.
        try:
            self.client = distributed.Client(self.runner.scheduler_address,
                                             timeout=connect_timeout, set_as_default=False)
            workers = self.runner.n_workers
            try:
                self.client.wait_for_workers(workers, timeout=WORKERS_TIMEOUT)
            except TimeoutError:
                joined = len(self.client.scheduler_info(n_workers=-1)["workers"])
                if joined == 0:
                    raise
                warnings.warn(f"{joined} of the allocation's {workers} Dask workers connected "
                              f"within {WORKERS_TIMEOUT:g} s; the cells run on those",
                              stacklevel=3)
        except Exception as err:
            self.close()
            raise ExecutorError(f"cannot use the Dask cluster of SLURM job "
                                f"{os.environ['SLURM_JOB_ID']}: {_last_line(err)}") from None

    def _start_local(self, distributed: Any, workers: int, dashboard: bool,
                     allowed_failures: int) -> None:
        if dashboard:
            try:
                importlib.import_module("distributed.dashboard.scheduler")  # needs bokeh
            except ImportError as err:
                raise ExecutorError(f"--dashboard needs bokeh: pip install bokeh ({err})"
                                    ) from None
        try:
            self.cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=DASHBOARD_ADDRESS if dashboard else None,
                # Without a dashboard the scheduler still serves /health and /metrics, by
                # default on 8787: a free port keeps 8787 for a real dashboard.
                scheduler_kwargs={"allowed_failures": allowed_failures,
                                  **({} if dashboard else {"dashboard_address": "127.0.0.1:0"})},
                resources=self._local_resources(),
            )
            self.client = distributed.Client(self.cluster, set_as_default=False)
        except Exception as err:
            self.close()
            raise ExecutorError(f"cannot start a local Dask cluster of {workers} worker(s): "
                                f"{_last_line(err)}") from None

    @staticmethod
    def _local_resources() -> dict[str, float] | None:
        """Local workers share this machine's GPU(s): each may take CUDA cells."""
        import torch

        return {GPU: 1} if torch.cuda.is_available() else None

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's URL when this executor serves one (dashboard=True), else None."""
        if not self.dashboard or self.client is None:
            return None
        return self.client.dashboard_link

    def _gpu_workers(self) -> int:
        assert self.client is not None
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return sum(1 for w in workers if (w.get("resources") or {}).get(GPU, 0) >= 1)

    def run(self, cells: Iterable[CellSpec], device: str) -> Iterator[CellResult]:
        """Submit every cell now; the iterator yields each result once, in completion order.

        CUDA cells (device cuda or cuda:N) run only on workers with the GPU resource. Stopping
        the iteration early cancels the cells that have not finished.
        """
        if self.client is None:
            raise ExecutorError("this DaskExecutor is closed")
        resources = {GPU: 1} if needs_gpu(device) else None
        pending: dict[str, tuple[Future, CellSpec]] = {}
        for cell in cells:
            key = f"cell-{cell.key}"
            if key in pending:
                continue  # the same cell twice is one task
            future = self.client.submit(self.cell_function, cell, device, key=key,
                                        pure=False, retries=self.retries, resources=resources)
            pending[key] = (future, cell)
        if resources is not None and pending and self._gpu_workers() == 0:
            warnings.warn(f"{len(pending)} cell(s) on {device} wait for a worker started "
                          f"with --resources {GPU}=1; none is connected yet", stacklevel=2)
        return self._stream(pending)

    def _stream(self, pending: dict[str, tuple[Future, CellSpec]]
                ) -> Iterator[CellResult]:
        if not pending:
            return
        assert self.client is not None
        client = self.client
        try:
            for future in _distributed().as_completed([f for f, _ in pending.values()],
                                                      loop=client.loop):
                entry = pending.pop(future.key, None)
                if entry is None:
                    continue  # already yielded: a cell is reported once, however often it ran
                try:
                    result = future.result()
                except Exception as err:  # raised on the worker, KilledWorker, cancelled
                    result = failed_cell(entry[1], err)
                future.release()  # the client has the result: the worker may drop it
                yield result
        finally:
            # Stopped early (the runner was interrupted): cancel what has not finished.
            if pending and self.client is not None:
                with suppress(Exception):  # never hide the error that stopped the run
                    client.cancel([f for f, _ in pending.values()])

    def close(self) -> None:
        """Disconnect, and shut down the cluster if this executor started one (a local one, or
        the allocation's: its scheduler and workers then exit)."""
        client, cluster, runner = self.client, self.cluster, self.runner
        self.client = self.cluster = self.runner = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()
            if runner is not None:
                runner.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
