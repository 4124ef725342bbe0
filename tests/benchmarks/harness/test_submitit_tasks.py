"""The submitit executor without its processes: how cells are grouped into array tasks, what a
SLURM task asks for, the record of submitted tasks, and every bad option as exit 2 naming it.

The executor's processes (submitit's local executor) are tested in tests/e2e/test_submitit.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estibench.benchmarks.harness.cost import rough_seconds
from estibench.benchmarks.harness.executors import ExecutorError, make_executor
from estibench.benchmarks.harness.executors.submitit_cluster import (
    FOLDER,
    SubmititExecutor,
    plan_tasks,
    read_tasks,
    slurm_parameters,
)
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.suites.schema import parse_suite
from estibench.cli.app import app
from tests.runs import TINY_RUN

pytest.importorskip("submitit")


@pytest.fixture(scope="module")
def cells():
    return expand(parse_suite(TINY_RUN)).runnable


def test_cells_are_grouped_into_tasks_of_about_the_target_work(cells):
    total = sum(rough_seconds(c) for c in cells)
    assert len(plan_tasks(cells, task_seconds=10 * total)) == 1  # a short suite: one task
    assert [len(g) for g in plan_tasks(cells, task_seconds=total / 12)] == [1] * 12
    groups = plan_tasks(cells, task_seconds=total / 3)
    assert len(groups) == 3
    assert sorted(c.key for g in groups for c in g) == sorted(c.key for c in cells)
    for group in groups:  # each keeps the run order
        positions = [cells.index(c) for c in group]
        assert positions == sorted(positions)
    loads = [sum(rough_seconds(c) for c in g) for g in groups]
    assert max(loads) <= 4 / 3 * total / 3 + max(rough_seconds(c) for c in cells)


def test_a_long_cell_is_a_task_of_its_own_and_groups_are_balanced(cells):
    long = dataclasses.replace(cells[0], seed=7, training=cells[0].training.model_copy(
        update={"steps": 6000}))
    mixed = [*cells, long]
    target = rough_seconds(long) / 2
    groups = plan_tasks(mixed, task_seconds=target)
    assert [long] in groups
    assert plan_tasks(mixed, tasks=2) == [[c for c in mixed if c is not long], [long]]
    assert len(plan_tasks(cells, tasks=50)) == len(cells)  # never more tasks than cells
    assert plan_tasks([], tasks=3) == []
    with pytest.raises(ValueError, match="exactly one of task_seconds and tasks"):
        plan_tasks(cells)


def test_a_slurm_task_asks_for_the_options(tmp_path):
    """What the sbatch file says, from submitit's own writer of it."""
    from submitit.slurm.slurm import _make_sbatch_string

    parameters = slurm_parameters(time_min=90.5, partition="gpu", mem_gb=16, gpus=1,
                                  account="lab", array_parallelism=4)
    text = _make_sbatch_string(command="run", folder=tmp_path, map_count=10, **parameters)
    for line in ("--partition=gpu", "--time=91", "--mem=16GB", "--gpus-per-node=1",
                 "--account=lab", "--array=0-9%4", "--job-name=estibench", "--cpus-per-task=1"):
        assert f"#SBATCH {line}" in text, line
    assert slurm_parameters(time_min=5, mem_gb=1.5)["mem"] == "1536MB"
    assert "gpus_per_node" not in slurm_parameters(time_min=5, gpus=0)


def test_the_task_records_survive_a_cut_last_line_but_not_damage(tmp_path):
    folder = tmp_path / FOLDER
    folder.mkdir()
    record = {"job_id": "7_0", "cluster": "slurm", "cells": ["a", "b"], "submitted": 1.0,
              "log": "x.err"}
    (folder / "tasks.jsonl").write_text(json.dumps(record) + "\n" + '{"job_id": "7_1", "clu')
    assert [r.job_id for r in read_tasks(tmp_path)] == ["7_0"]
    (folder / "tasks.jsonl").write_text("{oops\n" + json.dumps(record) + "\n")
    with pytest.raises(ExecutorError, match="tasks.jsonl line 1 is damaged"):
        read_tasks(tmp_path)
    assert read_tasks(tmp_path / "elsewhere") == []


@pytest.mark.parametrize(("options", "message"), [
    ({"cluster": "pbs"}, "--cluster must be one of local, slurm, got 'pbs'"),
    ({"time_min": -5}, "--time must be a number > 0, got -5"),
    ({"time_min": float("nan")}, "--time must be a number > 0, got nan"),
    ({"mem_gb": 0}, "--mem must be a number > 0, got 0"),
    ({"task_minutes": 0}, "--task-minutes must be a number > 0, got 0"),
    ({"gpus": -1}, "--gpus must be >= 0, got -1"),
    ({"array_parallelism": 0}, "--array-parallelism must be >= 1, got 0"),
    ({"partition": "gpu; rm -rf ~"}, "--partition must be a SLURM name"),
    ({"account": "a b"}, "--account must be a SLURM name"),
    ({"partition": "gpu"}, "--partition applies to --cluster slurm"),
    ({"account": "lab"}, "--account applies to --cluster slurm"),
    ({"task_minutes": 5}, "--task-minutes applies to --cluster slurm; --cluster local runs "
                          "--array-parallelism tasks"),
])
def test_bad_options_name_the_option(options, message):
    options = {"cluster": "local", **options}
    with pytest.raises(ExecutorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SubmititExecutor(**options)


def test_make_executor_routes_the_cluster_options():
    with pytest.raises(ExecutorError, match="needs --cluster slurm .* or --cluster local"):
        make_executor("submitit")
    with pytest.raises(ExecutorError, match="--cluster applies to --executor submitit, not "
                                            "--executor pool"):
        make_executor("pool", cluster="local")
    with pytest.raises(ExecutorError, match="--time applies to --executor submitit"):
        make_executor("inprocess", cluster_options={"time_min": 5, "gpus": None})
    executor = make_executor("submitit", cluster="local",
                             cluster_options={"array_parallelism": 3, "gpus": None})
    assert isinstance(executor, SubmititExecutor) and executor.local
    assert executor.array_parallelism == 3


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch, srun and sinfo on PATH: sinfo lists two partitions, sbatch refuses every job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    refuse = ("echo 'sbatch: error: Batch job submission failed: Invalid account or "
              "account/partition combination specified' >&2; exit 1")
    for name, body in (("sbatch", refuse), ("srun", "exit 1"),
                       ("sinfo", "printf 'cpu*\\ngpu\\n'")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_checks_its_commands_and_the_partition(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM here
    with pytest.raises(ExecutorError, match="--cluster slurm needs SLURM's commands"):
        SubmititExecutor("slurm")
    fake_slurm(tmp_path, monkeypatch)
    with pytest.raises(ExecutorError, match="--partition 'gpux' is not a partition of this "
                                            "cluster; sinfo lists: cpu, gpu"):
        SubmititExecutor("slurm", partition="gpux")
    executor = SubmititExecutor("slurm", partition="gpu", time_min=30, mem_gb=4,
                                folder=tmp_path / "run")
    assert not executor.local  # cells run on the nodes: they, not the client, need the device
    with pytest.raises(ExecutorError, match="--device cuda on SLURM needs GPUs in each array "
                                            "task: give --gpus 1"):
        executor.run([], "cuda")
    cells = expand(parse_suite(TINY_RUN)).runnable[:2]
    with pytest.raises(ExecutorError, match="the slurm cluster refused the array of 1 task"
                                            "\\(s\\): sbatch: error: .*Invalid account"):
        list(executor.run(cells, "cpu"))
    assert read_tasks(tmp_path / "run") == []  # nothing was submitted, nothing is recorded


def cli(*args: str):
    return CliRunner().invoke(app, ["run", "smoke", "--no-report", *args])


@pytest.mark.parametrize(("args", "named"), [
    (["--executor", "submitit", "--cluster", "pbs"], "--cluster must be one of local, slurm"),
    (["--cluster", "local", "--time", "-5"], "--time must be a number > 0, got -5.0"),
    (["--cluster", "local", "--gpus", "-2"], "--gpus must be >= 0, got -2"),
    (["--cluster", "local", "--partition", "gpu"], "--partition applies to --cluster slurm"),
    (["--cluster", "slurm"], "--cluster slurm needs SLURM's commands"),
    (["--executor", "submitit"], "--executor submitit needs --cluster slurm"),
    (["--workers", "2", "--mem", "4"], "--mem applies to --executor submitit"),
])
def test_bad_cluster_options_exit_2_naming_the_option(tmp_path, monkeypatch, args, named):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no SLURM commands
    result = cli("--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert named in text and "Traceback" not in text
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_a_cluster_type_whose_package_is_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    result = cli("--out", str(tmp_path / "run"), "--cluster", "local")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--executor submitit needs submitit: pip install 'estibench[cluster]'" in text
