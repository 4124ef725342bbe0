"""The suite's `[cluster]` table: what array tasks ask for, validated strictly (unknown keys named
with the allowed ones, times in minutes or SLURM's forms), recorded in the run directory and
not part of the run's identity."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from estibench.benchmarks.results import rundir
from estibench.benchmarks.suites.schema import (
    ClusterSpec,
    SuiteError,
    load_suite,
    parse_suite,
    slurm_minutes,
)
from estibench.cli.app import app
from tests.docs import blocks
from tests.runs import TOY


@pytest.mark.parametrize(("text", "minutes"), [
    ("90", 90), ("1:30", 1.5), ("2:00:00", 120), ("1-0", 1440), ("1-2", 1560),
    ("1-2:30", 1590), ("1-2:30:30", 1590.5), (" 45 ", 45),
])
def test_slurm_times_read_as_minutes(text, minutes):
    assert slurm_minutes(text) == pytest.approx(minutes)
    assert ClusterSpec(time=text).time == pytest.approx(minutes)


def test_a_cluster_table_is_read_with_the_suite(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY + '[cluster]\npartition = "gpu,gpu-long"\ntime = "4:00:00"\nmem = 16\n'
                          'gpus = 1\naccount = "lab"\ntask_minutes = 5\narray_parallelism = 8\n')
    cluster = load_suite(path).cluster
    assert cluster.model_dump() == {"partition": "gpu,gpu-long", "time": 240.0, "mem": 16.0,
                                    "gpus": 1, "account": "lab", "task_minutes": 5.0,
                                    "array_parallelism": 8}
    path.write_text(TOY)
    assert load_suite(path).cluster == ClusterSpec()  # no table: nothing asked


@pytest.mark.parametrize(("table", "message"), [
    ('partiton = "gpu"', "cluster: unknown key 'partiton' (did you mean 'partition'?); allowed: "
                         "partition, time, mem, gpus, account, task_minutes, "
                         "array_parallelism"),
    ("time = -5", "cluster.time: must be minutes > 0 or a SLURM time (MM, MM:SS, HH:MM:SS, "
                  "D-HH, D-HH:MM or D-HH:MM:SS) (got -5)"),
    ('time = "2h"', "cluster.time: must be minutes > 0 or a SLURM time"),
    ('time = "0:00"', "cluster.time: must be minutes > 0"),
    ('time = "1:2:3:4"', "cluster.time: must be minutes > 0 or a SLURM time"),
    ('partition = "gpu; rm -rf ~"', "cluster.partition: must be a SLURM name"),
    ('account = "a b"', "cluster.account: must be a SLURM name"),
    ("mem = 0", "cluster.mem: Input should be greater than 0"),
    ("gpus = -1", "cluster.gpus: Input should be greater than or equal to 0"),
    ("gpus = 1.5", "cluster.gpus: Input should be a valid integer"),
    ("array_parallelism = 0", "cluster.array_parallelism: Input should be greater than or "
                              "equal to 1"),
    ('task_minutes = "10"', "cluster.task_minutes: Input should be a valid number"),
])
def test_a_bad_cluster_table_is_exit_2_naming_the_key(tmp_path, table, message):
    path = tmp_path / "toy.toml"
    path.write_text(TOY + "[cluster]\n" + table + "\n")
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert message in str(raised.value)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run"),
                                      "--no-report"])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_the_table_is_recorded_but_a_run_may_resume_with_another(tmp_path):
    raw = {"name": "toy", "objectives": [{"name": "bernoulli_toy"}],
           "estimators": [{"name": "reinforce"}], "training": {"steps": 2}}
    first = parse_suite({**raw, "cluster": {"partition": "gpu", "time": 30}})
    digest = rundir.data_sha256(first.data.model_dump())
    with rundir.claim(tmp_path / "run", first, digest) as run_dir:
        pass
    assert rundir.stored_cluster(run_dir) == first.cluster
    assert json.loads((run_dir / "suite.json").read_text())["cluster"]["partition"] == "gpu"
    other = parse_suite({**raw, "cluster": {"partition": "cpu", "gpus": 0}})
    with rundir.claim(run_dir, other, digest, resuming=True):
        pass  # other resources, the same experiment
    assert rundir.stored_cluster(run_dir) == other.cluster  # and the new table is recorded
    changed = parse_suite({**raw, "training": {"steps": 3}})
    with (pytest.raises(rundir.RunDirError, match="training.steps: 2 in the run directory, 3"),
          rundir.claim(run_dir, changed, digest, resuming=True)):
        pass
    (run_dir / "suite.json").write_text(json.dumps({**other.model_dump(),
                                                    "cluster": {"time": "soon"}}))
    with pytest.raises(rundir.RunDirError, match="its \\[cluster\\] table is damaged: time"):
        rundir.stored_cluster(run_dir)


def test_the_documented_table_is_a_valid_one():
    (code,) = [b.code for b in blocks.blocks("docs/cluster.md")
               if b.lang == "toml" and b.code.startswith("[cluster]\n")]
    table = tomllib.loads(code)["cluster"]
    assert set(table) == set(ClusterSpec.model_fields)  # every key shown
    assert ClusterSpec.model_validate(table).time == 120
