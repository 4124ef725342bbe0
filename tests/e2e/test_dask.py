"""The Dask executor on real schedulers and worker processes, all on 127.0.0.1.

One LocalCluster of two worker processes serves most tests (a worker takes seconds to start);
the fault tests get a cluster of their own. Numbers are compared with the in-process run of
the tiny suite `tests.runs.TINY_RUN`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import estibench
from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.executors import make_executor
from estibench.benchmarks.harness.executors.dask_cluster import (
    GPU,
    DaskExecutor,
    ExecutorError,
    needs_gpu,
)
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.store import CellResult
from estibench.benchmarks.suites.schema import parse_suite
from estibench.cli.app import app
from tests.runs import TINY_RUN, numbers, statuses

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    """A LocalCluster of 2 single-threaded worker processes, shut down after the module."""
    with DaskExecutor(local_workers=2) as executor:
        yield executor


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_local_cluster_gives_the_in_process_numbers(cluster, in_process_numbers, tmp_path):
    assert len(cluster.client.run(os.getpid)) == 2  # two worker processes, not threads
    run_dir = estibench.run(parse_suite(TINY_RUN), out=tmp_path / "dask", device="cpu",
                             executor=cluster, report=False).run_dir
    assert len(statuses(run_dir)) == expand(parse_suite(TINY_RUN)).size
    pd.testing.assert_series_equal(numbers(run_dir), in_process_numbers, check_exact=True)


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(cluster, in_process_numbers,
                                                                      tmp_path):
    # Through the scheduler's address, as `--scheduler tcp://...` connects to a running cluster.
    assert cluster.cluster is not None
    remote = DaskExecutor(scheduler=cluster.cluster.scheduler_address)
    victims: list[str] = []
    seen: list[str] = []

    def kill_a_busy_worker(result: CellResult, done: int, todo: int) -> None:
        seen.append(result.key)
        if victims or done < 2:
            return
        busy = {w: keys for w, keys in remote.client.processing().items() if keys}
        assert busy, "no cell left running: make the suite longer"
        worker, keys = next(iter(busy.items()))
        pid = remote.client.run(os.getpid, workers=[worker])[worker]
        victims.extend(str(k).removeprefix("cell-") for k in keys)
        os.kill(pid, signal.SIGKILL)  # the nanny starts a fresh worker; the scheduler reruns

    try:
        run_dir = estibench.run(parse_suite(TINY_RUN), out=tmp_path / "killed", device="cpu",
                                 executor=remote, on_cell=kill_a_busy_worker,
                                 report=False).run_dir
    finally:
        remote.close()
    plan = expand(parse_suite(TINY_RUN))
    assert victims
    assert sorted(seen) == sorted(c.key for c in plan.runnable)  # each yielded once
    cells = statuses(run_dir)  # unique keys: each written once
    assert len(cells) == plan.size and (cells != "failed").all()
    assert set(victims) <= set(cells[cells == "ok"].index)
    # A rerun cell computes exactly what it would have.
    pd.testing.assert_series_equal(numbers(run_dir), in_process_numbers, check_exact=True)


def test_cuda_cells_run_only_on_workers_with_the_gpu_resource(cluster):
    """A `dask worker --resources GPU=1` joins the cluster; CUDA cells go there only."""
    assert needs_gpu("cuda") and needs_gpu("cuda:1") and not needs_gpu("cpu")
    assert not needs_gpu("auto")
    assert cluster.cluster is not None
    address = cluster.cluster.scheduler_address
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--resources",
         f"{GPU}=1", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
         "--name", "gpu-worker", "--death-timeout", "30"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cluster.client.wait_for_workers(3, timeout=60)
        cell = expand(parse_suite(TINY_RUN)).runnable[0]
        cells = [dataclasses.replace(cell, seed=i) for i in range(4)]
        with DaskExecutor(scheduler=address, cell_function=where_it_ran) as remote:
            ran = {r.config["seed"]: r.environment["worker"]
                   for r in remote.run(cells, "cuda:0")}
        assert ran == dict.fromkeys(range(4), "gpu-worker")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def where_it_ran(cell: CellSpec, device: str, threads: int = 1) -> CellResult:
    """A stand-in cell recording the name of the worker that ran it."""
    name = distributed.get_worker().name
    return CellResult(key=cell.key, config=cell.to_json(), status="ok", reason=None,
                      started=0.0, finished=0.0, environment={"worker": str(name)})


# cell seed -> the fault its task injects
FAULTS = {100: "raise", 101: "die"}


def faulty_cell(cell: CellSpec, device: str, threads: int = 1) -> CellResult:
    """run_cell, unless the cell's seed asks its task to raise or to kill its worker process."""
    fault = FAULTS.get(cell.seed)
    if fault == "raise":
        raise RuntimeError(f"injected fault in cell {cell.seed}")
    if fault == "die":
        # Give the worker time to report the tasks it finished before (a death right after a
        # task errs can beat the worker's report of that error to the scheduler, and the
        # scheduler then blames the death on it too), then die as a segfault would.
        time.sleep(2.0)
        os._exit(1)
    return run_cell(cell, device, threads)


def test_a_task_that_raises_or_kills_its_worker_becomes_a_failed_cell():
    plan = expand(parse_suite(TINY_RUN))
    first, second = plan.runnable[:2]
    raising = dataclasses.replace(first, seed=100)
    dying = dataclasses.replace(second, seed=101)
    # allowed_failures=0: the first worker death fails the cell (KilledWorker). The dying cell
    # goes last so that no innocent cell is on the worker when it dies.
    with DaskExecutor(local_workers=1, allowed_failures=0, cell_function=faulty_cell) as ex:
        results = list(ex.run([first, raising, second, dying], "cpu"))
    by_key = {r.key: r for r in results}
    assert len(results) == len(by_key) == 4
    assert by_key[first.key].status == by_key[second.key].status == "ok"
    failed = by_key[raising.key]
    assert failed.status == "failed" and failed.metrics == []
    assert failed.reason == "RuntimeError: injected fault in cell 100"
    killed = by_key[dying.key]
    assert killed.status == "failed"
    assert killed.reason.startswith("distributed.scheduler.KilledWorker: ")
    assert dying.key in killed.reason


def test_an_unreachable_scheduler_exits_2_with_a_message(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "estibench.cli.app", "run", "smoke", "--executor", "dask",
         "--scheduler", address, "--out", str(out), "--no-report"],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert f"cannot reach the Dask scheduler at '{address}'" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60  # connect_timeout (10 s) plus the start of the CLI
    assert not out.exists()


def test_exactly_one_of_scheduler_and_local_workers():
    for kwargs in ({}, {"scheduler": "tcp://127.0.0.1:1", "local_workers": 2}):
        with pytest.raises(ExecutorError, match="--scheduler.*--local-workers"):
            make_executor("dask", **kwargs)
    with pytest.raises(ValueError, match="--local-workers must be >= 1"):
        DaskExecutor(local_workers=0)
    with pytest.raises(ValueError, match="not a Dask scheduler address"):
        DaskExecutor(scheduler="htp://127.0.0.1:1")
    result = CliRunner().invoke(app, ["run", "smoke", "--executor", "dask"])
    assert result.exit_code == 2
    assert "--scheduler" in result.output and "--local-workers" in result.output
