"""A researcher's model given badly through the real CLI app (in-process): a factory that
returns something else, a module that does not import, an f of the wrong shape and a bad data
file are each exit 2 with the message, in a suite and on the command line, and nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from estibench.cli.app import app

MODEL = '''
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

import estibench


def make_model(features: int = 4, wrong_shape: bool = False):
    encoder = nn.Linear(features, 3)

    def f(z, x):
        value = z.sum(-1)
        return value[..., None] if wrong_shape else value

    return estibench.Model(posterior=lambda x: Independent(Bernoulli(logits=encoder(x)), 1),
                           f=f, encoder=encoder, example_input=torch.zeros(1, features))


def make_nothing():
    return {"posterior": None}
'''

SUITE = """
[data]
name = "file"
path = "{data}"
[training]
steps = 2
batch_size = 4
[metrics]
checkpoints = [-1]
replicas = 4
throughput = false
[[objectives]]
{objective}
[[estimators]]
name = "reinforce"
"""


def _bad(result, *named: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    text = " ".join(result.output.split())  # rich may wrap a long line
    for name in named:
        assert name in text, (name, result.output)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "my_model.py"
    model.write_text(MODEL)
    data = tmp_path / "x.csv"
    data.write_text("\n".join("0.1,0.2,0.9,1.0" for _ in range(12)) + "\n")
    return model, data


def _run(tmp_path: Path, data: Path, objective: str, *args: str):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(data=data, objective=objective))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(suite), "--out", str(out), "--no-report",
                                      *args])
    assert not out.exists()  # refused before anything was written
    return result


def test_a_factory_that_returns_something_else(tmp_path: Path, files) -> None:
    model, data = files
    _bad(_run(tmp_path, data, f'factory = "{model}:make_nothing"'),
         "objectives.0", "make_nothing", "returned dict", "estibench.Model")


def test_a_module_that_does_not_import(tmp_path: Path, files) -> None:
    model, data = files
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nimport no_such_dependency\n")
    _bad(_run(tmp_path, data, f'factory = "{broken}:make_model"'),
         "does not import", "No module named 'no_such_dependency'", "broken.py, line 2")
    _bad(_run(tmp_path, data, 'name = "bernoulli_toy"', "--objective", f"{broken}:make_model"),
         f"--objective '{broken}:make_model'", "No module named 'no_such_dependency'")
    _bad(_run(tmp_path, data, 'name = "bernoulli_toy"', "--objective", "no_pkg.models:make"),
         "No module named 'no_pkg'")


def test_f_of_the_wrong_shape(tmp_path: Path, files) -> None:
    model, data = files
    _bad(_run(tmp_path, data, f'factory = "{model}:make_model"\n'
                              "options = { wrong_shape = true }"),
         "f(z, x) returned shape (2, 1, 1)", "expected (S, *batch) = (2, 1)")


def test_a_bad_data_file(tmp_path: Path, files) -> None:
    model, _ = files
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d\n0.1,0.2,0.3,0.4\n0.5,oops,0.7,0.8\n")
    _bad(_run(tmp_path, bad, f'factory = "{model}:make_model"'),
         "bad.csv", "line 3", "'oops' is not a number")
    wide = tmp_path / "wide.csv"
    wide.write_text("\n".join("0,1,0,1,0" for _ in range(12)) + "\n")
    _bad(_run(tmp_path, wide, f'factory = "{model}:make_model"'),
         "objectives.0", "its example input has 4 features", "have 5")


def test_neither_or_both_of_name_and_factory(tmp_path: Path, files) -> None:
    model, data = files
    _bad(_run(tmp_path, data, 'options = { dims = 2 }'), "objectives.0",
         "give name", "neither was given")
    _bad(_run(tmp_path, data, f'name = "bernoulli_toy"\nfactory = "{model}:make_model"'),
         "objectives.0", "not both")
    _bad(_run(tmp_path, data, 'factory = "make_model"'), "objectives.0.factory",
         "package.module:function")
