"""A researcher's own model end to end: the worked example's suite through the real CLI, a model
in a temporary file through `estibench.run` (and resumed), and one found by module on the
command line (`--objective module:factory`) with its cells built in worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import estibench
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

ROOT = Path(__file__).resolve().parents[2]

MODEL = '''
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

import estibench


def make_model(features: int = 4, bits: int = 3):
    encoder = nn.Linear(features, bits)
    decoder = nn.Linear(bits, features)
    return estibench.Model(
        posterior=lambda x: Independent(Bernoulli(logits=encoder(x)), 1),
        f=lambda z, x: -((decoder(z) - x) ** 2).sum(-1),
        encoder=encoder, model=decoder, example_input=torch.zeros(1, features), name="bits")
'''

SUITE = """
seeds = [0]
num_samples = [2]
[data]
name = "file"
path = "{data}"
binarization = "none"
[training]
steps = 3
batch_size = 8
[metrics]
checkpoints = [-1]
replicas = 4
eval_batch_size = 8
wrt = ["distribution", "encoder", "decoder"]
throughput = false
[[objectives]]
{objective}
[[estimators]]
name = "reinforce"
options = {{ baseline = "loo" }}
[[estimators]]
name = "exact"
"""


def _cli(*args: str, cwd: Path = ROOT, env: dict | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "estibench.cli.app", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "200",
                               **(env or {})})


def _cells(run_dir: Path) -> list[dict]:
    with Store.open(run_dir, create=False) as store:
        cells = store.cells()
    return [{**config, "status": status}
            for config, status in zip(cells["config"], cells["status"], strict=True)]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "bits_model.py"
    model.write_text(MODEL)
    data = tmp_path / "examples.csv"
    values = np.random.default_rng(0).normal(size=(40, 4))
    data.write_text("\n".join(",".join(f"{v:.5f}" for v in row) for row in values) + "\n")
    return model, data


def test_the_worked_example_runs_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "slate"
    ran = _cli("run", "examples/slate_bandit.toml", "--quick", "--out", str(run_dir))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    cells = _cells(run_dir)
    by_estimator = {c["estimator"]: c["status"] for c in cells}
    assert by_estimator == {"exact": "ok", "reinforce": "ok", "reinforce-loo": "ok",
                            "gumbel_softmax-0.5": "ok", "straight_through": "ok",
                            "pathwise": "not_applicable"}
    assert {c["objective"] for c in cells} == {"slate_bandit.make_slate_bandit"}
    assert {c["objective_name"] for c in cells} == {"examples/slate_bandit.py:make_slate_bandit"}
    assert (run_dir / "report" / "report.html").is_file()
    with Store.open(run_dir, create=False) as store:
        rows = store.metrics()
    metrics = set(rows["metric"])
    assert {"test/exact_objective", "grad/encoder/bias_norm"} <= metrics, sorted(metrics)
    # the model's closures run under torch.func.vmap: no fallback to the loop
    assert set(rows[rows["metric"].str.endswith("/vectorized")]["value"]) == {1.0}


def test_a_model_file_runs_through_estibench_run_and_resumes(tmp_path: Path) -> None:
    model, data = _files(tmp_path)
    text = SUITE.format(data=data, objective=f'factory = "{model}:make_model"\n'
                                             "options = { bits = 2 }")
    import tomllib

    suite = parse_suite({**tomllib.loads(text), "name": "bits"})
    assert suite.objectives[0].id == "bits_model.make_model-2"
    result = estibench.run(suite, out=tmp_path / "run", report=False)
    assert (result.ok, result.failed, result.not_applicable) == (2, 0, 0), result.failures
    cells = _cells(result.run_dir)
    assert {c["objective_name"] for c in cells} == {f"{model}:make_model"}
    assert all(c["objective_options"] == {"bits": 2} for c in cells)
    again = estibench.run(suite, resume=result.run_dir, report=False)
    assert (again.ok, again.failed) == (2, 0)
    assert len(_cells(result.run_dir)) == 2  # every cell exactly once


def test_a_module_on_the_command_line_runs_in_worker_processes(tmp_path: Path) -> None:
    model, data = _files(tmp_path)
    module = tmp_path / "models_on_path"
    module.mkdir()
    model.rename(module / "bits_model.py")
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(data=data, objective='name = "bernoulli_toy"'))
    run_dir = tmp_path / "run"
    ran = _cli("run", str(suite), "--objective", "bits_model:make_model", "--workers", "2",
               "--out", str(run_dir), "--no-report", env={"PYTHONPATH": str(module)})
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    cells = _cells(run_dir)
    assert {(c["objective"], c["status"]) for c in cells} == {("bits_model.make_model", "ok")}
    stored = json.loads((run_dir / "suite.json").read_text())
    assert stored["objectives"][0]["factory"] == "bits_model:make_model"
    assert textwrap.shorten(stored["description"], 200).endswith(
        "(overridden: --objective bits_model:make_model)")
