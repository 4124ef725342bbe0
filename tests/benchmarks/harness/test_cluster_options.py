"""Cluster settings: one set of keys for the suite's `[cluster]` table, the command line and the
submitit executor; the table overridden by the options, both recorded so that a resumed run asks
for the same; and the Dask recipe's entry (`--scheduler slurm-runner`) refusing to start
anywhere but in a SLURM allocation, or without dask-jobqueue, with exit 2 naming what to do.

The submitit executor's processes and the Dask allocation's are run in tests/e2e.
"""

from __future__ import annotations

import inspect
import json
import os
import stat
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from estibench.benchmarks.harness.executors import ExecutorError, make_executor
from estibench.benchmarks.harness.executors.submitit_cluster import (
    FOLDER,
    OPTIONS,
    SLURM_ONLY,
    SubmititExecutor,
    cluster_settings,
)
from estibench.benchmarks.suites.schema import ClusterSpec, parse_suite
from estibench.cli.app import app
from tests.runs import TINY_RUN

pytest.importorskip("submitit")


def test_the_table_the_options_and_the_executor_have_the_same_keys():
    assert list(OPTIONS) == list(ClusterSpec.model_fields)
    run = typer.main.get_command(app).commands["run"]
    panel = {opt for p in run.params if getattr(p, "rich_help_panel", None)
             == "Cluster (submitit)" for opt in p.opts}
    assert panel == {"--cluster"} | {flag for _, flag in OPTIONS.values()}
    keywords = inspect.signature(SubmititExecutor).parameters
    assert all(keyword in keywords for keyword, _ in OPTIONS.values())
    assert set(SLURM_ONLY) < set(OPTIONS)


def run_dir_of(tmp_path: Path, cluster: dict) -> Path:
    """A run directory as the runner leaves it before `attach`: the suite recorded."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(parents=True)
    suite = parse_suite({**TINY_RUN, "cluster": cluster})
    (run_dir / "suite.json").write_text(json.dumps(suite.model_dump()))
    return run_dir


def test_the_options_override_the_table_and_a_resumed_run_asks_for_the_same(tmp_path):
    run_dir = run_dir_of(tmp_path, {"time": "1:00:00", "gpus": 0, "array_parallelism": 4,
                                    "partition": "gpu", "mem": 8})
    executor = SubmititExecutor("local", array_parallelism=2)
    executor.attach(run_dir)
    # the table's SLURM keys do not apply on this machine; the option beats the table
    assert (executor.time_min, executor.gpus, executor.array_parallelism) == (60, 0, 2)
    assert executor.partition is None and executor.mem_gb is None
    recorded = cluster_settings(run_dir)
    assert recorded == {"cluster": "local", "command_line": {"array_parallelism": 2},
                        "settings": {"time": 60.0, "gpus": 0, "array_parallelism": 2}}
    # A second client of the run (--resume) given only --time: the first one's option holds.
    resumed = SubmititExecutor("local", time_min=15)
    resumed.attach(run_dir)
    assert (resumed.time_min, resumed.gpus, resumed.array_parallelism) == (15, 0, 2)
    assert cluster_settings(run_dir)["command_line"] == {"array_parallelism": 2, "time": 15}
    # Without the options, on a run directory without settings: the table alone.
    bare = SubmititExecutor("local")
    bare.attach(run_dir_of(tmp_path / "other", {"array_parallelism": 3}))
    assert bare.array_parallelism == 3 and bare.time_min is None


def slurm_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch and srun that do nothing, and an sinfo that lists the partitions cpu and gpu."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", "exit 1"), ("srun", "exit 1"),
                       ("sinfo", "printf 'cpu*\\ngpu\\n'")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_takes_every_key_of_the_table_and_checks_its_partition(tmp_path, monkeypatch):
    slurm_commands(tmp_path, monkeypatch)
    run_dir = run_dir_of(tmp_path, {"partition": "gpu", "time": "2-0", "mem": 8,
                                    "account": "lab", "task_minutes": 3, "gpus": 1})
    executor = SubmititExecutor("slurm", mem_gb=16)
    executor.attach(run_dir)
    assert (executor.partition, executor.time_min, executor.mem_gb, executor.account,
            executor.task_minutes, executor.gpus) == ("gpu", 2880, 16, "lab", 3, 1)
    # Options given for a local run of the same directory do not carry over to SLURM.
    (run_dir / FOLDER / "cluster.json").write_text(json.dumps(
        {"cluster": "local", "command_line": {"array_parallelism": 2}, "settings": {}}))
    again = SubmititExecutor("slurm")
    again.attach(run_dir)
    assert again.array_parallelism is None and again.mem_gb == 8
    wrong = run_dir_of(tmp_path / "wrong", {"partition": "gpux"})
    with pytest.raises(ExecutorError, match="partition \\(the run's \\[cluster\\] table, or "
                                            "cluster.json\\) 'gpux' is not a partition of "
                                            "this cluster; sinfo lists: cpu, gpu"):
        SubmititExecutor("slurm").attach(wrong)


def test_damaged_settings_are_named(tmp_path):
    run_dir = run_dir_of(tmp_path, {})
    path = run_dir / FOLDER / "cluster.json"
    path.parent.mkdir()
    for text, why in (("{oops", "cannot be read"),
                      ('{"cluster": "pbs"}', "cluster must be one of local, slurm"),
                      ('{"cluster": "local", "settings": {"partiton": "x"}}',
                       "unknown key 'partiton'")):
        path.write_text(text)
        with pytest.raises(ExecutorError, match=why):
            SubmititExecutor("local").attach(run_dir)


def run_smoke(*args: str):
    return CliRunner().invoke(app, ["run", "smoke", "--no-report", *args])


def test_slurm_runner_outside_an_allocation_is_exit_2(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    result = run_smoke("--out", str(tmp_path / "run"), "--scheduler", "slurm-runner")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert ("--scheduler slurm-runner runs inside a SLURM allocation, as the command of srun"
            in text)
    assert "SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID not set here" in text
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    result = run_smoke("--out", str(tmp_path / "run"), "--scheduler", "slurm-runner")
    assert result.exit_code == 2, result.output
    assert ("needs at least 3 SLURM tasks (a scheduler, the client and one worker or more), "
            "got SLURM_NTASKS='2': give sbatch --ntasks=3 or more"
            in " ".join(result.output.split()))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("module", "args", "extra"), [
    ("submitit", ["--cluster", "local"], "--executor submitit needs submitit"),
    ("dask_jobqueue", ["--scheduler", "slurm-runner"],
     "--scheduler slurm-runner needs dask-jobqueue"),
    ("distributed", ["--local-workers", "1"], "--executor dask needs Dask"),
])
def test_a_cluster_type_that_is_not_installed_names_the_extra(tmp_path, monkeypatch, module,
                                                              args, extra):
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, module, None)
    result = run_smoke("--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    wanted = "estibench[dask]" if module == "distributed" else "estibench[cluster]"
    assert f"{extra}: pip install '{wanted}'" in text, text
    assert not (tmp_path / "run").exists()


def test_the_dask_options_route_to_the_allocation():
    with pytest.raises(ExecutorError, match="exactly one of --scheduler .* or --local-workers"):
        make_executor("dask", scheduler="slurm-runner", local_workers=2)


def test_a_misspelt_cluster_option_is_exit_2_naming_it(tmp_path):
    result = run_smoke("--out", str(tmp_path / "run"), "--cluster", "local", "--partiton", "gpu")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "No such option: --partiton" in text and "--partition" in text
    assert not (tmp_path / "run").exists()
