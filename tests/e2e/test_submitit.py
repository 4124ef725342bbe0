"""The submitit executor on submitit's local executor: real array tasks in real processes, the
same code path as on SLURM (which is not here). Numbers are compared with the in-process run of
the tiny suite `tests.runs.TINY_RUN`.

A task's process imports this module to find the faulty cell functions below, as the Dask tests
do: tasks start in the client's working directory, the repository's root.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import estibench
from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.cost import rough_seconds
from estibench.benchmarks.harness.executors.submitit_cluster import (
    FOLDER,
    SubmititExecutor,
    cluster_settings,
    read_tasks,
    task_states,
)
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.store import CellResult
from estibench.benchmarks.suites.schema import parse_suite
from estibench.cli.app import app
from tests import fake_slurm
from tests.cli_support import cli
from tests.runs import TINY_RUN, numbers, statuses

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[2]
POLL = 0.2


def toml(table: dict, prefix: str = "") -> str:
    """A suite dict as TOML: scalars and lists at the top, then tables and arrays of tables."""

    def value(v) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines, tables = [], []
    for key, v in table.items():
        if isinstance(v, dict):
            tables.append(f"[{prefix}{key}]\n" + toml(v, f"{prefix}{key}."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.extend(f"[[{prefix}{key}]]\n" + toml(x, f"{prefix}{key}.") for x in v)
        else:
            lines.append(f"{key} = {value(v)}")
    return "\n".join(lines) + "\n" + "\n".join(tables)


def task_logs(run_dir: Path) -> list[Path]:
    """One per task started (submitit opens it as the task starts)."""
    return sorted((run_dir / FOLDER / "jobs").glob("*_0_log.err"))


def test_the_cli_on_a_local_cluster_stores_the_in_process_numbers(in_process_numbers, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(toml(TINY_RUN))
    out = tmp_path / "run"
    result = cli("run", str(suite), "--executor", "submitit", "--cluster", "local",
                 "--array-parallelism", "3", "--out", str(out), "--device", "cpu",
                 "--no-report")
    assert result.returncode == 0, result.stderr
    plan = expand(parse_suite(TINY_RUN))
    assert len(statuses(out)) == plan.size
    pd.testing.assert_series_equal(numbers(out), in_process_numbers, check_exact=True)
    tasks = read_tasks(out)  # a few array tasks, not one per cell
    assert len(tasks) == len(task_logs(out)) == 3
    assert sorted(k for t in tasks for k in t.cells) == sorted(c.key for c in plan.runnable)
    assert not list((out / FOLDER / "results").iterdir())  # every result collected


# cell seed -> the fault its task injects
FAULTS = {100: "raise", 101: "die"}


def faulty_cell(cell: CellSpec, device: str, threads: int = 1) -> CellResult:
    """run_cell, unless the cell's seed asks its task to raise or to die (as a segfault or the
    kernel's OOM killer would end it)."""
    fault = FAULTS.get(cell.seed)
    if fault == "raise":
        raise RuntimeError(f"injected fault in cell {cell.seed}")
    if fault == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(cell, device, threads)


def test_a_task_that_dies_fails_its_cell_with_its_log_and_the_others_complete(tmp_path):
    plan = expand(parse_suite(TINY_RUN))
    a, b, c, d, e = plan.runnable[:5]
    dying, raising = dataclasses.replace(b, seed=101), dataclasses.replace(d, seed=100)
    # One task runs them in this order: it dies at the second, a new task takes the rest and
    # raises at the fourth, a third task runs the last.
    executor = SubmititExecutor("local", array_parallelism=1, folder=tmp_path,
                                poll_interval=POLL, cell_function=faulty_cell)
    results = {r.key: r for r in executor.run([a, dying, c, raising, e], "cpu")}
    assert len(results) == 5
    assert {k for k, r in results.items() if r.status == "ok"} == {a.key, c.key, e.key}
    tasks = read_tasks(tmp_path)
    assert [t.cells for t in tasks] == [[a.key, dying.key, c.key, raising.key, e.key],
                                        [c.key, raising.key, e.key], [e.key]]
    killed, crashed = results[dying.key], results[raising.key]
    assert killed.status == crashed.status == "failed"
    assert killed.reason.startswith(f"array task {tasks[0].job_id} ended while the cell ran")
    assert killed.reason.endswith(f"; log: {tasks[0].log}") and Path(tasks[0].log).is_file()
    assert "its log ends: RuntimeError: injected fault in cell 100" in crashed.reason
    assert crashed.reason.endswith(f"; log: {tasks[1].log}")
    # The last task hands its cell over, then submitit records its end: wait for that.
    wait_for(lambda: "running" not in [t.state for t in task_states(tmp_path)], 30,
             "the last task to end")
    assert [t.state for t in task_states(tmp_path)] == ["failed", "failed", "done"]


def test_a_task_that_cannot_start_fails_all_its_cells_with_its_log(tmp_path, monkeypatch):
    """The task's process cannot import the cell function (a module only the client sees)."""
    module = tmp_path / "client_only" / "client_only_cells.py"
    module.parent.mkdir()
    module.write_text("from estibench.benchmarks.harness.cell import run_cell\n\n\n"
                      "def cell(spec, device, threads=1):\n"
                      "    return run_cell(spec, device, threads)\n")
    monkeypatch.syspath_prepend(str(module.parent))
    from client_only_cells import cell  # noqa: PLC0415 (the module is made above)

    cells = expand(parse_suite(TINY_RUN)).runnable[:3]
    executor = SubmititExecutor("local", array_parallelism=1, folder=tmp_path / "run",
                                poll_interval=POLL, cell_function=cell)
    results = list(executor.run(cells, "cpu"))
    (task,) = read_tasks(tmp_path / "run")
    assert sorted(r.key for r in results) == sorted(c.key for c in cells)
    for result in results:
        assert result.status == "failed"
        assert result.reason.startswith(f"array task {task.job_id} ended before it ran any "
                                        "cell; its log ends: ")
        assert "No module named 'client_only_cells'" in result.reason
        assert result.reason.endswith(f"; log: {task.log}")


def slow_cell(cell: CellSpec, device: str, threads: int = 1) -> CellResult:
    """run_cell, then half a second's wait: tasks still run when the client is killed."""
    result = run_cell(cell, device, threads)
    time.sleep(0.5)
    return result


_CLIENT = textwrap.dedent(
    """
    import sys

    import estibench
    from estibench.benchmarks.harness.executors.submitit_cluster import SubmititExecutor
    from estibench.benchmarks.suites.schema import parse_suite
    from tests.e2e.test_submitit import POLL, slow_cell, two_tasks
    from tests.runs import TINY_RUN

    out, cluster = sys.argv[1:]
    suite = parse_suite({**TINY_RUN, "seeds": [0]})
    executor = SubmititExecutor(cluster, poll_interval=POLL, cell_function=slow_cell,
                                **two_tasks(suite, cluster))
    estibench.run(suite, out=out, device="cpu", executor=executor, report=False,
                  on_cell=lambda result, done, todo: print(done, flush=True))
    """
)


def two_tasks(suite, cluster: str) -> dict:
    """The options that make two array tasks of the suite's cells."""
    if cluster == "local":
        return {"array_parallelism": 2}
    total = sum(rough_seconds(c) for c in expand(suite).runnable)
    return {"task_minutes": total / 2 / 60 * 1.01, "time_min": 30}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("cluster", ["local", "slurm"])
def test_a_killed_client_resumes_by_collecting_its_tasks_without_running_them_again(
        in_process_numbers, tmp_path, request, cluster):
    if cluster == "slurm":
        request.getfixturevalue("slurm")  # the stand-in SLURM, below
    out = tmp_path / "run"
    errors = tmp_path / "client.err"
    # Its tasks inherit its stdout: read the one line wanted, never wait for the pipe's end.
    with open(errors, "w") as stderr:
        client = subprocess.Popen([sys.executable, "-c", _CLIENT, str(out), cluster], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert client.stdout is not None
        line = client.stdout.readline()  # the first cell is stored
        assert line.strip() == "1", errors.read_text()
    finally:
        client.kill()  # SIGKILL: no clean-up of any kind
        client.wait(timeout=30)
        if client.stdout is not None:
            client.stdout.close()
    tasks = read_tasks(out)
    assert len(tasks) == 2 and "running" in [t.state for t in task_states(out)]
    stored = set(statuses(out).index)  # what the client stored before it died
    # Let one more cell finish while no client is there, then resume at once: the results
    # waiting are collected, the tasks still running are waited for, nothing is submitted.
    results = out / FOLDER / "results"
    wait_for(lambda: {p.stem for p in results.glob("*.pkl")} - stored, 60, "a cell to finish")
    shown = CliRunner().invoke(app, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"{len(stored)} cell(s) stored (ok {len(stored)})" in text and "running" in text
    assert all(t.job_id in text for t in tasks)
    assert f"wait to be stored: estibench run --resume {out}" in text
    collected = []
    resumed = estibench.run(None, resume=out, device="cpu", report=False,
                            executor=SubmititExecutor(cluster, poll_interval=POLL,
                                                      cell_function=slow_cell),
                            on_cell=lambda result, done, todo: collected.append(result.key))
    assert read_tasks(out) == tasks and len(task_logs(out)) == 2  # no task started again
    assert sorted(collected) == sorted(set(collected)) and len(collected) == 6 - len(stored)
    cells = statuses(resumed.run_dir)  # every cell exactly once
    assert len(cells) == 6 and (cells == "ok").all()
    reference = in_process_numbers[in_process_numbers.index.get_level_values("key").isin(
        cells.index)]
    pd.testing.assert_series_equal(numbers(out), reference, check_exact=True)
    wait_for(lambda: "running" not in [t.state for t in task_states(out)], 30,
             "the tasks to end")
    assert [t.state for t in task_states(out)] == ["done", "done"]
    shown = CliRunner().invoke(app, ["status", str(out)])
    assert "6 cell(s) stored (ok 6)" in shown.output and "done 2" in shown.output


@pytest.mark.slow
def test_grouped_tasks_beat_one_task_per_cell(tmp_path):
    """Every task starts Python and imports torch: twelve tasks for twelve short cells cost
    many times the two that group them (local cluster; the figures are printed)."""
    seconds = {}
    for tasks in (12, 2):
        executor = SubmititExecutor("local", array_parallelism=tasks, poll_interval=POLL)
        started = time.perf_counter()
        estibench.run(parse_suite(TINY_RUN), out=tmp_path / str(tasks), device="cpu",
                      executor=executor, report=False)
        seconds[tasks] = time.perf_counter() - started
        assert len(read_tasks(tmp_path / str(tasks))) == tasks
    print(f"one task per cell: {seconds[12]:.1f} s; two grouped tasks: {seconds[2]:.1f} s")
    assert seconds[2] < seconds[12]


# -- the SLURM path, on a stand-in SLURM (tests/fake_slurm.py) ---------------------------------


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """sbatch, srun and sacct on PATH, running array tasks as processes here."""
    for name, value in fake_slurm.install(tmp_path / "bin", tmp_path / "slurm").items():
        monkeypatch.setenv(name, value)


def test_a_slurm_job_array_stores_the_in_process_numbers(slurm, in_process_numbers, tmp_path):
    total = sum(rough_seconds(c) for c in expand(parse_suite(TINY_RUN)).runnable)
    executor = SubmititExecutor("slurm", task_minutes=total / 3 / 60 * 1.01, time_min=30,
                                partition="debug", poll_interval=POLL)
    run_dir = estibench.run(parse_suite(TINY_RUN), out=tmp_path / "run", device="cpu",
                            executor=executor, report=False).run_dir
    pd.testing.assert_series_equal(numbers(run_dir), in_process_numbers, check_exact=True)
    tasks = read_tasks(run_dir)  # one array of three tasks: <array id>_<index>
    assert len(tasks) == 3 and {t.cluster for t in tasks} == {"slurm"}
    array = tasks[0].job_id.split("_")[0]
    assert [t.job_id for t in tasks] == [f"{array}_{i}" for i in range(3)]
    assert all(Path(t.log).is_file() for t in tasks)
    script = (run_dir / FOLDER / "jobs" / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-2%3" in script and "#SBATCH --partition=debug" in script
    wait_for(lambda: "running" not in [t.state for t in task_states(run_dir)], 30,
             "the tasks to end")
    assert [(t.state, t.detail) for t in task_states(run_dir)] == [("done", "COMPLETED")] * 3


def test_a_slurm_task_that_dies_fails_its_cell_and_the_others_complete(slurm, tmp_path):
    plan = expand(parse_suite(TINY_RUN))
    a, b, c = plan.runnable[:3]
    dying = dataclasses.replace(b, seed=101)
    executor = SubmititExecutor("slurm", task_minutes=60, time_min=30, folder=tmp_path / "run",
                                poll_interval=POLL, cell_function=faulty_cell)
    results = {r.key: r for r in executor.run([a, dying, c], "cpu")}
    first, again = read_tasks(tmp_path / "run")
    assert first.cells == [a.key, dying.key, c.key] and again.cells == [c.key]
    assert results[a.key].status == results[c.key].status == "ok"
    assert results[dying.key].reason.startswith(
        f"array task {first.job_id} ended (FAILED) while the cell ran")
    assert results[dying.key].reason.endswith(f"; log: {first.log}")


def test_the_suite_s_cluster_table_is_what_the_tasks_ask_for_unless_an_option_says_otherwise(
        slurm, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(toml({**TINY_RUN, "seeds": [0], "cluster": {
        "partition": "debug", "time": "0:45:00", "mem": 2, "task_minutes": 60}}))
    out = tmp_path / "run"
    result = cli("run", str(suite), "--cluster", "slurm", "--mem", "3", "--out", str(out),
                 "--device", "cpu", "--no-report")
    assert result.returncode == 0, result.stderr
    assert (statuses(out) == "ok").all()
    (task,) = read_tasks(out)  # an hour of work per task: one task
    script = (out / FOLDER / "jobs" / f"{task.job_id.split('_')[0]}_submission.sh").read_text()
    for line in ("--partition=debug", "--time=45", "--mem=3GB"):  # the option beats the table
        assert f"#SBATCH {line}\n" in script, line
    assert cluster_settings(out) == {
        "cluster": "slurm", "command_line": {"mem": 3.0},
        "settings": {"partition": "debug", "time": 45.0, "mem": 3.0, "task_minutes": 60.0}}
