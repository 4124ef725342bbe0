"""`estibench recommend` and `estibench.recommend` end to end: a user's model in a temporary
file, found by path and by module, ranked; rankings that are known by derivation come out
right; bad input is exit 2 with the message; the report opens with the answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import estibench

ROOT = Path(__file__).resolve().parents[2]

# f linear in a one-hot z: E_q[f] = w . softmax(logits), whose gradient J' w is exactly what
# straight-through computes from any sample (f' = w whatever z is): zero variance, zero bias.
LINEAR = '''
import torch
from torch import nn
from torch.distributions import OneHotCategorical

import estibench


class Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.tensor([1.0, -2.0, 0.5, 3.0]))

    def forward(self, z):
        return (z * self.w).sum(-1)


def make_linear(features: int = 3):
    torch.manual_seed(0)
    encoder = nn.Linear(features, 4)
    weights = Weights()
    return estibench.Model(
        posterior=lambda x: OneHotCategorical(logits=encoder(x)),
        f=lambda z, x: weights(z), encoder=encoder, model=weights,
        example_input=torch.zeros(1, features), name="linear_one_hot")


def make_wrong_shape(features: int = 3):
    encoder = nn.Linear(features, 4)
    return estibench.Model(
        posterior=lambda x: OneHotCategorical(logits=encoder(x)),
        f=lambda z, x: z, encoder=encoder, example_input=torch.zeros(1, features))


def not_a_model():
    return 42
'''


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "linear_model.py").write_text(LINEAR)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(64, 3)).astype(np.float32))
    return tmp_path


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "estibench.cli.app", "recommend", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "200",
                               **(env or {})})


def _best(table, step=None):
    final = table[table["step"] == (table["step"].max() if step is None else step)]
    return final[final["best"] != ""]


def test_straight_through_is_exact_on_a_linear_f_and_ranks_with_exact(model_dir, tmp_path):
    table = estibench.recommend(
        f"{model_dir / 'linear_model.py'}:make_linear", budget="2m",
        estimators=["exact", "straight_through", "reinforce", "gumbel_softmax"],
        num_samples=[1], steps=20, checkpoints=2, out=tmp_path / "run",
        data={"name": "file", "path": str(model_dir / "x.npy"), "binarization": "none"},
        report=False)
    assert set(table["step"]) == {0, 20}
    assert table["wrt"].iloc[0] == "encoder"
    assert (table["bias_against"] == "exact").all()
    for step in (0, 20):
        best = _best(table, step)
        assert set(best["estimator"]) == {"exact", "straight_through"}, best
        assert (best["best"] == "tied for best").all()
        at = table[table["step"] == step].set_index("estimator")
        assert at.loc["straight_through", "mse"] <= at.loc["straight_through", "resolution"]
        # REINFORCE is unbiased but noisy; the relaxation is biased: both behind. (Beside the
        # trainer, reinforce-loo, the plain one is shown with the default it changes.)
        plain = at.loc["reinforce(baseline=none)"]
        assert plain["mse_evals_lo"] > at.loc["exact", "mse_evals_hi"]
        assert at.loc["gumbel_softmax", "verdict"].startswith("biased")


def test_rloo_with_four_samples_beats_reinforce_with_one_per_evaluation(tmp_path):
    table = estibench.recommend(
        "bernoulli_toy", budget="2m", estimators=["reinforce", "reinforce-loo"],
        num_samples=[1, 4], steps=20, checkpoints=1, out=tmp_path / "run", report=False)
    rows = {(e, s): r for (e, s), r in table.set_index(["estimator", "num_samples"]).iterrows()}
    rloo, plain = rows[("reinforce-loo", 4)], rows[("reinforce(baseline=none)", 1)]
    assert rloo["rank"] < plain["rank"]
    assert rloo["mse_evals_hi"] < plain["mse_evals_lo"]  # beyond the noise
    assert ("reinforce-loo", 1) not in rows  # the leave-one-out baseline needs S >= 2
    assert table.attrs["elapsed"] < 120


def test_the_same_estimator_twice_is_a_tie_not_a_winner():
    import pandas as pd

    from estibench.reports.ranking import _rank_step

    def row(name: str, variance: float, lo: float, hi: float) -> dict:
        return {"estimator": name, "num_samples": 1, "evaluations": 1.0, "seconds": 1e-3,
                "variance": variance, "variance_lo": lo, "variance_hi": hi,
                "squared_bias": 0.0, "squared_bias_lo": 0.0, "squared_bias_hi": 0.0,
                "mean_norm": 1.0}

    tied = _rank_step(pd.DataFrame([row("a", 1.0, 0.9, 1.1), row("b", 1.05, 0.95, 1.15),
                                    row("c", 2.0, 1.8, 2.2)]))
    assert list(tied["best"]) == ["tied for best", "tied for best", ""]
    apart = _rank_step(pd.DataFrame([row("a", 1.0, 0.9, 1.1), row("b", 1.5, 1.2, 1.8)]))
    assert list(apart["best"]) == ["best", ""]
    # at equal cost: b costs a quarter of a, so its variance counts a quarter
    cheap = pd.DataFrame([row("a", 1.0, 0.9, 1.1), {**row("b", 2.0, 1.8, 2.2),
                                                     "evaluations": 0.25}])
    ranked = _rank_step(cheap)
    assert list(ranked["estimator"]) == ["b", "a"] and ranked["best"].iloc[0] == "best"
    assert ranked["mse_evals"].iloc[0] == pytest.approx(0.5)


def test_the_cli_by_module_writes_a_report_that_opens_with_the_answer(model_dir):
    out = model_dir / "run"
    result = _cli("linear_model:make_linear", "--budget", "2m", "--estimators",
                  "exact,straight_through,reinforce", "--num-samples", "1", "--steps", "10",
                  "--checkpoints", "1", "--data", "x.npy", "--out", str(out), cwd=model_dir,
                  env={"PYTHONPATH": str(model_dir)})
    assert result.returncode == 0, result.stderr
    assert "tie for the lowest gradient MSE" in result.stdout
    assert "exact (S = 1) and straight_through (S = 1)" in result.stdout
    assert "predicted" in result.stdout and "took" in result.stdout
    markdown = (out / "report" / "report.md").read_text()
    assert markdown.index("## Which estimator?") < markdown.index("## Summary")
    assert (out / "report" / "figures" / "mse_vs_cost.png").exists()


@pytest.mark.parametrize(("objective", "extra", "message"), [
    ("linear_model.py:not_a_model", (), "returned int"),
    ("linear_model.py:make_wrong_shape", (), "shape"),
    ("no_such_file.py:make", (), "no_such_file.py"),
    ("linear_model.py:make_linear", ("--data", "missing.npy"), "missing.npy"),
    ("bernoulli_toy", ("--budget", "soon"), "budget must be a duration"),
    ("bernoulli_toy", ("--budget", "1s"), "is too small"),
    ("bernoulli_toy", ("--estimators", "reinforse"), "reinforse"),
])
def test_bad_input_is_exit_2_with_the_message(model_dir, objective, extra, message):
    result = _cli(objective, "--steps", "5", *extra, cwd=model_dir)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_budget_is_parsed_and_checked():
    from estibench.benchmarks.harness.recommend import checkpoint_steps, parse_budget

    assert parse_budget("90s") == 90 and parse_budget("5m") == 300
    assert parse_budget("1.5h") == 5400 and parse_budget(42) == 42
    assert checkpoint_steps(200, 3) == [0, 100, -1]
    assert checkpoint_steps(200, 1) == [-1]
    assert checkpoint_steps(0, 3) == [-1]
