"""Hardening through real processes: misbehaving entry-point plugins, a locked run directory,
workers that outlive a SIGKILLed client, and pool workers killed mid-cell."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from estibench.benchmarks.harness.cell import run_cell
from estibench.benchmarks.harness.executors import ProcessPool
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.results.rundir import RunDirError
from estibench.benchmarks.results.store import CellResult, Store
from estibench.benchmarks.suites.schema import load_suite, parse_suite
from tests.cli_support import CLI, cli
from tests.plugin_support import write_plugin

MISBEHAVING = '''
import torch
from estibench.estimators import Estimator
from estibench.estimators.base import output


class _Base(Estimator):
    supports = "anything"


class RaisingConstructor(_Base):
    name = "raising_ctor"

    def __init__(self):
        raise RuntimeError("constructor broke [badly]")


class RaisingEstimate(_Base):
    name = "raising_estimate"

    def estimate(self, q, f, num_samples, noise):
        raise KeyError("values in [nan, nan]; x[/]y")


class WrongType(_Base):
    name = "wrong_type"

    def estimate(self, q, f, num_samples, noise):
        return (1, 2)


class WrongShape(_Base):
    name = "wrong_shape"

    def estimate(self, q, f, num_samples, noise):
        z = q.sample((num_samples,))
        fz = self.evaluate(f, z, num_samples, q)
        return output(fz, z, loss=fz)  # (S, *B): not averaged over the samples
'''

ENTRY_POINTS = "\n".join([
    "raising_ctor = misbehaving:RaisingConstructor",
    "raising_estimate = misbehaving:RaisingEstimate",
    "wrong_type = misbehaving:WrongType",
    "wrong_shape = misbehaving:WrongShape",
    "missing = no_such_module:Thing",
])

PLUGIN_SUITE = """
seeds = [0]
num_samples = [2]
[training]
steps = 3
[metrics]
checkpoints = [-1]
replicas = 4
throughput = false
[[objectives]]
name = "bernoulli_toy"
""" + "".join(f'[[estimators]]\nname = "{name}"\n' for name in
              ("raising_ctor", "raising_estimate", "wrong_type", "wrong_shape", "reinforce"))


def test_misbehaving_plugins_fail_their_own_cells_and_list_shows_broken_ones(tmp_path):
    plugin = write_plugin(tmp_path / "site", "misbehaving", MISBEHAVING,
                          {"estibench.estimators": ENTRY_POINTS})
    env = {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    listed = cli("list", "estimators", env={**env, "COLUMNS": "400"})  # rows on one line
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines()
            if line.count("│") > 2}  # the table's rows by their name column
    assert {"reinforce", "wrong_shape", "raising_ctor"} <= set(rows)
    assert "broken" in rows["raising_ctor"] and "constructor broke [badly]" in rows["raising_ctor"]
    assert "broken" in rows["missing"]
    assert "ModuleNotFoundError: No module named 'no_such_module'" in rows["missing"]

    suite = tmp_path / "plugins.toml"
    suite.write_text(PLUGIN_SUITE)
    out = tmp_path / "run"
    result = cli("run", str(suite), "--out", str(out), "--device", "cpu", "--no-report",
                 env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reasons = " ".join(result.stderr.split())
    assert "4 cell(s) failed" in reasons
    assert "RuntimeError: constructor broke [badly]" in reasons
    assert "KeyError: 'values in [nan, nan]; x[/]y'" in reasons
    assert "returned tuple, not an EstimatorOutput" in reasons
    assert "loss has shape (2, 1); expected q.batch_shape = (1,)" in reasons
    with Store.open(out, create=False) as store:
        cells = store.cells()
    status = dict(zip(cells["config"].map(lambda c: c["estimator"]), cells["status"],
                      strict=True))
    assert status == {"raising_ctor": "failed", "raising_estimate": "failed",
                      "wrong_type": "failed", "wrong_shape": "failed", "reinforce": "ok"}


KILLABLE = """
seeds = [0, 1, 2, 3]
num_samples = [2]
[training]
steps = 200
log_every = 50
[metrics]
checkpoints = [0, -1]
replicas = 8
throughput = false
[[objectives]]
name = "bernoulli_toy"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
"""


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc: no third-party process library)."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid not in found:
                    found.add(kid)
                    frontier.append(kid)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _holder(run_dir: Path) -> str:
    try:
        return (run_dir / ".lock").read_text().strip()
    except OSError:
        return ""


def test_sigkill_leaves_no_process_behind_and_the_lock_goes_with_the_run(tmp_path):
    suite = tmp_path / "killable.toml"
    suite.write_text(KILLABLE)
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "run", str(suite), "--out", str(out), "--device", "cpu",
                             "--workers", "2", "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while (_holder(out) != str(proc.pid) or len(_children(proc.pid)) < 2) and (
            time.time() < deadline and proc.poll() is None):
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    # A second run of the same directory is refused while the first holds it.
    with pytest.raises(RunDirError, match=f"is in use by another estibench run "
                                          f"\\(pid {proc.pid}\\)"):
        run(None, resume=out, device="cpu")
    workers = _children(proc.pid)  # two pool workers and the resource tracker
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "processes outlived their client"
    # The kernel dropped the lock with the process: resume runs, every cell exactly once.
    resumed = cli("run", "--resume", str(out), "--device", "cpu", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    with Store.open(out, create=False) as store:
        cells = store.cells()
    assert len(cells) == expand(load_suite(suite)).size and cells["key"].is_unique
    assert (cells["status"] == "ok").all()


@pytest.mark.parametrize("settle", [0.0, 2.0])
def test_ctrl_c_on_the_pool_stops_at_once_with_one_message_and_no_traceback(tmp_path, settle):
    """Ctrl-C reaches every process of the terminal's group: the client says where the run's
    cells are and how to resume; the workers neither print a traceback nor hold it up, inside
    their cells (settle 2 s) or while still importing (at once)."""
    suite = tmp_path / "killable.toml"
    suite.write_text(KILLABLE.replace("steps = 200", "steps = 5000"))
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "run", str(suite), "--out", str(out), "--device", "cpu",
                             "--workers", "2", "--no-report"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while (_holder(out) != str(proc.pid) or len(_children(proc.pid)) < 2) and (
            time.time() < deadline and proc.poll() is None):
        time.sleep(0.1)
    time.sleep(settle)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "interrupted: completed cells are kept in" in stderr
    assert "estibench run --resume" in stderr
    deadline = time.time() + 30
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the interrupt"


TWO_CELLS = {
    "name": "two", "seeds": [0, 1], "num_samples": [2],
    "training": {"steps": 2}, "metrics": {"checkpoints": [-1], "replicas": 4,
                                          "throughput": False},
    "objectives": [{"name": "bernoulli_toy"}], "estimators": [{"name": "reinforce"}],
}


def kill_worker_once(cell: CellSpec, device: str, marker: str) -> CellResult:
    """Kills its own worker the first time it runs seed 0 (a marker file remembers)."""
    if cell.seed == 0 and not Path(marker).exists():
        Path(marker).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(cell, device)


def kill_worker_always(cell: CellSpec, device: str) -> CellResult:
    if cell.seed == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(cell, device)


def test_a_pool_worker_killed_mid_cell_is_replaced_and_its_cell_retried(tmp_path):
    configs = expand(parse_suite(TWO_CELLS)).runnable
    once = functools.partial(kill_worker_once, marker=str(tmp_path / "killed"))
    pool = ProcessPool(1, cell_function=once)
    try:
        results = list(pool.run(configs, "cpu"))
    finally:
        pool.close()
    assert (tmp_path / "killed").exists()  # seed 0 did kill its worker once
    assert sorted(r.config["seed"] for r in results) == [0, 1]
    assert all(r.status == "ok" for r in results)
    # A cell that kills every worker it touches fails alone: the cell that was lost with it
    # is rerun on its own and blamed for nothing.
    pool = ProcessPool(2, allowed_failures=0, cell_function=kill_worker_always)
    try:
        results = {r.config["seed"]: r for r in pool.run(configs, "cpu")}
    finally:
        pool.close()
    assert results[1].status == "ok" and results[0].status == "failed"
    assert "worker process died while it ran alone, 1 time(s)" in results[0].reason
    assert "BrokenProcessPool" in results[0].reason


def report_warm(cell: CellSpec, device: str) -> CellResult:
    """A cell that says, in its reason, whether its worker had already paid the one-time
    costs (dynamo imported, an optimizer stepped) when it started."""
    import sys

    warm = "torch._dynamo" in sys.modules and "torch.optim.adam" in sys.modules
    result = run_cell(cell, device)
    return dataclasses.replace(result, reason=f"warm={warm}")


def test_pool_workers_are_warm_before_their_first_cell():
    """A worker's first cell used to pay its lazy imports (over a second on a toy that takes
    0.05 s): the ETA, learnt from run times, was ten times too long on a fresh pool."""
    pool = ProcessPool(2, cell_function=report_warm)
    try:
        results = list(pool.run(expand(parse_suite(TWO_CELLS)).runnable, "cpu"))
    finally:
        pool.close()
    assert [r.reason for r in results] == ["warm=True", "warm=True"]
