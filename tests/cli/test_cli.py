"""End-to-end: the real `estibench` CLI as a subprocess on real files."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import load_suite
from estibench.cli.app import app
from tests.cli_support import CLI, cli
from tests.plugin_support import NAN_ESTIMATOR, write_plugin

KILLABLE = """
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
num_samples = [2]
[training]
steps = 150
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
[[estimators]]
name = "st_gumbel"
"""

NAN_SUITE = """
seeds = [0]
num_samples = [2]
[training]
steps = 5
[metrics]
checkpoints = [-1]
replicas = 4
throughput = false
[[objectives]]
name = "bernoulli_toy"
[[estimators]]
name = "nan_estimator"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
"""


def test_smoke_suite_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    result = cli("run", "smoke", "--out", str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and "summary" in result.stdout
    with Store.open(out, create=False) as store:
        cells = store.cells()
        assert store.integrity_ok()
    plan = expand(load_suite("smoke"))
    assert len(cells) == plan.size and (cells["status"] != "failed").all()
    shown = cli("show", str(out))
    assert shown.returncode == 0 and "not applicable" in shown.stdout
    for fmt in ("csv", "parquet"):
        exported = cli("export", str(out), "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        assert (out / f"results.{fmt}").stat().st_size > 0


def _completed(run_dir: Path) -> int:
    try:
        with sqlite3.connect(run_dir / "results.sqlite", timeout=5) as db:
            return db.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkill_mid_run_then_resume_gives_every_cell_exactly_once(tmp_path):
    suite = tmp_path / "killable.toml"
    suite.write_text(KILLABLE)
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "run", str(suite), "--out", str(out), "--device", "cpu",
                             "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _completed(out) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _completed(out)
    total = expand(load_suite(suite)).size
    assert 3 <= killed_at < total

    resumed = cli("run", "--resume", str(out), "--device", "cpu", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    with Store.open(out, create=False) as store:
        cells = store.cells()
        assert store.integrity_ok()
        metrics = store.metrics()
    assert len(cells) == total and cells["key"].is_unique
    assert (cells["status"] == "ok").all()
    # Every cell has its full set of metric rows: nothing half-written survived the kill.
    assert metrics.groupby("key").size().nunique() == 1


def test_nan_estimator_fails_its_cell_and_the_run_completes(tmp_path):
    plugin = write_plugin(tmp_path / "plugin", "nanplugin", NAN_ESTIMATOR,
                          {"estibench.estimators": "nan_estimator = nanplugin:NaNEstimator"})
    suite = tmp_path / "nan.toml"
    suite.write_text(NAN_SUITE)
    out = tmp_path / "run"
    env = {"PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    result = cli("run", str(suite), "--out", str(out), "--device", "cpu", "--no-report",
                 env=env)
    assert result.returncode == 1, result.stderr
    assert "nan_estimator" in result.stderr and "non-finite loss" in result.stderr
    assert "step 0" in result.stderr
    with Store.open(out, create=False) as store:
        statuses = dict(zip(store.cells()["key"], store.cells()["status"], strict=True))
    assert sorted(statuses.values()) == ["failed", "ok"]
    # every cell failed: the run still ends with its counts and failures, as does `show`
    only = tmp_path / "only.toml"
    only.write_text(NAN_SUITE.split("[[estimators]]\nname = \"reinforce\"")[0])
    result = cli("run", str(only), "--out", str(tmp_path / "only"), "--no-report", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cells: 0 ok, 1 failed" in result.stdout
    shown = cli("show", str(tmp_path / "only"), env=env)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr


def test_bad_inputs_exit_2_with_a_message_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[objectives]]\nname = "categorcal_vae"\n[[estimators]]\nname = "pathwise"\n')
    result = cli("run", str(bad))  # the real process once...
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "did you mean 'categorical_vae'" in result.stderr
    for args in (["run", "no-such-suite"], ["run", "smoke", "--device", "tpu"],
                 ["run", "smoke", "--seeds", "1,x"], ["run", "smoke", "--executor", "slurm"],
                 ["list", "estimatorz"], ["show", str(tmp_path / "nowhere")],
                 ["export", str(tmp_path / "nowhere")], ["run", "--resume", str(tmp_path)]):
        result = CliRunner().invoke(app, args)  # ...and the same app in-process for the rest
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and result.exception is None or isinstance(
            result.exception, SystemExit), args


def test_list_commands():
    assert "reinforce" in cli("list", "estimators").stdout.split()
    for what, expected in (("objectives", "categorical_vae"), ("datasets", "digits"),
                           ("suites", "standard")):
        result = CliRunner().invoke(app, ["list", what])
        assert result.exit_code == 0 and expected in result.output.split()


# Malformed suites, generated: every one must give exit 2 and a message, never a traceback.
_values = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5),
                    st.booleans(), st.lists(st.integers(-2, 2), max_size=3))
_sections = st.sampled_from(["training", "metrics", "data"])
_keys = st.sampled_from(["steps", "batch_size", "learning_rate", "replicas", "iwae_ks",
                         "checkpoints", "name", "threshold", "optimizer", "bogus"])


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=_sections, key=_keys, value=_values, garbage=st.booleans())
def test_generated_malformed_suites_exit_2(tmp_path_factory, section, key, value, garbage):
    text = f'[{section}]\n{key} = {_toml(value)}\n[[objectives]]\nname = "bernoulli_toy"\n'
    text += '[[estimators]]\nname = "reinforce"\n[training]\nsteps = "many"\n' if garbage else ""
    path = tmp_path_factory.mktemp("suite") / "generated.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(path.parent / "r")])
    assert result.exit_code == 2, (text, result.output, result.exception)
    assert "error:" in result.output


def test_a_generated_malformed_suite_through_the_real_cli(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('seeds = "zero"\n[training]\nsteps = -3\n[[objectives]]\nname = 1\n')
    result = cli("run", str(path))
    assert result.returncode == 2
    assert "seeds" in result.stderr and "training.steps" in result.stderr
    assert "objectives.0.name" in result.stderr and "estimators" in result.stderr


def test_a_missing_data_file_exits_2_before_any_cell(tmp_path):
    suite = tmp_path / "mnist.toml"
    suite.write_text('[data]\nname = "mnist"\n[[objectives]]\nname = "gaussian_vae"\n'
                     'options = { input_dim = 784 }\n[[estimators]]\nname = "pathwise"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out),
                                      "--data-path", str(tmp_path / "nowhere")])
    assert result.exit_code == 2, result.output
    assert "nowhere" in result.output and "ESTIBENCH_MNIST" in result.output
    assert not out.exists()


LABELLED = """
seeds = [0]
num_samples = [2]
[training]
steps = 5
batch_size = 8
[metrics]
checkpoints = [-1]
replicas = 8
throughput = false
bounds = false
[[objectives]]
name = "categorical_vae"
options = { variables = 2, categories = 3, hidden = 8 }
[[objectives]]
name = "bernoulli_toy"
[[estimators]]
name = "reinforce"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
"""


def test_the_run_summary_names_what_differs_and_fits_80_columns(tmp_path):
    """Labels are values without names in storage (categorical_vae-3-8-2, reinforce): the
    terminal names them, wraps rather than truncates at 80 columns, and says which column is
    the ELBO and which the exact objective."""
    suite = tmp_path / "labels.toml"
    suite.write_text(LABELLED)
    result = cli("run", str(suite), "--out", str(tmp_path / "run"), env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # rich wraps long titles at spaces
    assert "…" not in result.stdout
    assert "categorical_vae(categories=3, hidden=8, variables=2) / reinforce-loo" in text
    assert "summary of categorical_vae(categories=3, hidden=8, variables=2)" in text
    assert "summary of bernoulli_toy" in text and "reinforce(baseline=none)" in text
    assert re.search(r"exact[^\n]*\n[^\n]*objective", result.stdout) and "bound" not in text
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    shown = cli("show", str(tmp_path / "run"), env={"COLUMNS": "80"})
    assert shown.returncode == 0 and "reinforce(baseline=none)" in " ".join(shown.stdout.split())
