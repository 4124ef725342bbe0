"""Progress that tells the truth: cost-weighted ETA, one line per cell off a terminal, Ctrl-C
exits 130 with the resume command, and `estibench.run` returns what happened."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import estibench
from estibench.benchmarks.harness.cost import STEP_UNITS, Clock, cell_units
from estibench.benchmarks.harness.plan import expand
from estibench.benchmarks.suites.schema import parse_suite
from tests.cli.test_cli import KILLABLE, cli

TINY = {
    "name": "tiny", "seeds": [0], "num_samples": [2],
    "training": {"steps": 3, "log_every": 1},
    "metrics": {"checkpoints": [-1], "replicas": 4, "throughput": False},
    "objectives": [{"name": "bernoulli_toy"}],
    "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}, {"name": "pathwise"},
                   {"name": "exact"}],
}
TINY_TOML = """
seeds = [0, 1]
num_samples = [2]
[training]
steps = 50
[metrics]
checkpoints = [-1]
replicas = 4
throughput = false
[[objectives]]
name = "bernoulli_toy"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
[[estimators]]
name = "st_gumbel"
"""


def test_cell_cost_follows_steps_samples_replicas_and_enumeration():
    plan = expand(parse_suite({**TINY, "objectives": [
        {"name": "categorical_vae", "options": {"variables": 2, "categories": 3, "hidden": 8}}]}))
    by_estimator = {c.estimator.label: c for c in plan.runnable}
    rloo, exact = by_estimator["reinforce-loo"], by_estimator["exact"]
    # steps x (batch x S + per-step dispatch) + checkpoints x wrt x replicas x eval batch x S
    # + bounds
    bounds = 200 * (1 + 10 + 100 + 2)
    assert cell_units(rloo) == 3 * (32 * 2 + STEP_UNITS) + 1 * 2 * 4 * 32 * 2 + bounds
    # exact evaluates f at all 3^2 = 9 configurations whatever S
    assert cell_units(exact) == 3 * (32 * 9 + STEP_UNITS) + 1 * 2 * 4 * 32 * 9 + bounds
    longer = dataclasses.replace(rloo, training=rloo.training.model_copy(update={"steps": 30}))
    assert cell_units(longer) - cell_units(rloo) == 27 * (32 * 2 + STEP_UNITS)


def test_eta_is_by_cost_done_not_cells_done():
    cheap = expand(parse_suite(TINY)).runnable[0]
    dear = dataclasses.replace(cheap, seed=1,
                               training=cheap.training.model_copy(update={"steps": 3000}))
    clock = Clock([cheap, dear])
    assert clock.eta() is None and clock.current() is cheap
    clock.started -= 10.0  # the cheap cell took 10 s (no fixed-time part: throughput off)
    clock.finish(clock.keys[0], 10.0)
    assert clock.current() is dear
    expected = 10.0 / cell_units(cheap) * cell_units(dear)
    assert abs(clock.eta() - expected) / expected < 0.01  # cells done would say 10 s


def test_eta_is_a_range_until_every_kind_of_cell_has_run_once():
    """Per-kind rates from the cells' own run times: a kind not seen yet is costed at the
    fastest and the slowest rate seen (a range), then at its own once one of its cells ran."""
    toy = expand(parse_suite(TINY)).runnable[0]
    vae = dataclasses.replace(toy, objective_name="categorical_vae",
                              objective_options={"variables": 2, "categories": 3})
    slow_toy = dataclasses.replace(toy, seed=1)
    clock = Clock([toy, vae, slow_toy, dataclasses.replace(vae, seed=1)])
    assert clock.eta_range() is None
    clock.started -= 10.0
    clock.finish(clock.keys[0], 10.0)  # the toy's rate: 10 s over its units
    low, high = clock.eta_range()
    assert low == high  # one kind seen: the unseen one costs the only rate there is
    clock.finish(clock.keys[1], 100 * 10.0 * cell_units(vae) / cell_units(toy))
    clock.started -= clock.seconds[clock.keys[1]]
    low, high = clock.eta_range()
    # the toy left at the toy's rate, the VAE left at the VAE's: one number again
    toy_rate = 10.0 / cell_units(toy)
    expected = toy_rate * cell_units(slow_toy) + 100 * toy_rate * cell_units(vae)
    assert abs(low - expected) / expected < 1e-6 and abs(high - expected) / expected < 1e-6
    other = dataclasses.replace(toy, objective_options={"dims": 3}, seed=2)
    mixed = Clock([toy, vae, other])
    mixed.started -= 110.0
    mixed.finish(mixed.keys[0], 10.0)
    mixed.finish(mixed.keys[1], 100.0)
    low, high = mixed.eta_range()  # `other` is a kind not seen: between the two rates
    assert low < high


def test_the_eta_text_shows_a_range_only_while_it_is_wide():
    from estibench.progress import eta_text

    assert eta_text(None) == "estimating"
    assert eta_text((100.0, 110.0)) == "0:01:45"
    assert eta_text((60.0, 600.0)) == "0:01:00–0:10:00"


def test_dry_run_estimate_is_training_time_when_training_is_all_there_is(monkeypatch):
    """The dry run times training steps and scales them by `cell_units`: a cell of N steps and
    no measurement is N step times (it was 1 + STEP_UNITS times that for a toy, whose step is
    one unit of f plus STEP_UNITS of dispatch: 2575 min predicted for a 10-minute suite)."""
    import estibench.benchmarks.harness.cost as cost

    def steps_of_10ms(objective, estimator, x, s, steps, elapsed):
        elapsed.extend([0.5] + [0.01] * steps)  # a slow warm-up step, ignored

    monkeypatch.setattr(cost, "_timed_steps", steps_of_10ms)
    cell = expand(parse_suite({**TINY, "training": {"steps": 400}})).runnable[0]
    cell = dataclasses.replace(cell, metrics=cell.metrics.model_copy(update={"checkpoints": []}))
    assert abs(cost.estimate_seconds([cell]) - 400 * 0.01) < 1e-9


def test_dry_run_times_the_gradient_statistics_on_their_own(monkeypatch):
    """A toy cell that is all gradient statistics (no training) costs checkpoints x (the
    probe's fixed seconds + M x its seconds per replica): not its f evaluations at a training
    step's speed per unit, which had predicted 12 s for mohamed2020's 187 s."""
    import estibench.benchmarks.harness.cost as cost

    monkeypatch.setattr(cost, "_timed_steps",
                        lambda o, e, x, s, steps, elapsed: elapsed.extend([0.01] * (steps + 1)))
    monkeypatch.setattr(cost, "statistics_seconds", lambda config: (0.5, 0.002))
    cell = expand(parse_suite({**TINY, "training": {"steps": 0}})).runnable[0]
    cell = dataclasses.replace(cell, metrics=cell.metrics.model_copy(
        update={"checkpoints": [0, -1], "replicas": 1000}))
    assert cost._checkpoints(cell) == 1  # step 0 and the final step coincide
    assert abs(cost.estimate_seconds([cell]) - (0.5 + 1000 * 0.002)) < 1e-9


def test_dry_run_counts_the_reference_gradient_once_per_trajectory(monkeypatch):
    """A suite with a reference gradient: each cell that computes one costs checkpoints x the
    reference's replicas x its estimator's seconds per replica (timed at the reference's S);
    cells sharing a trained model share it, as the run does."""
    import estibench.benchmarks.harness.cost as cost

    monkeypatch.setattr(cost, "_timed_steps",
                        lambda o, e, x, s, steps, elapsed: elapsed.extend([0.01] * (steps + 1)))
    probed = []

    def probe(cell):
        probed.append((cell.estimator.label, cell.num_samples))
        return (0.5, 0.01) if cell.num_samples == 8 else (0.5, 0.002)  # the reference: S = 8

    monkeypatch.setattr(cost, "statistics_seconds", probe)
    reference = {"estimator": "reinforce", "options": {"baseline": "loo"}, "num_samples": 8,
                 "replicas": 512}
    suite = {**TINY, "training": {"steps": 0},
             "metrics": {**TINY["metrics"], "checkpoints": [0, -1], "replicas": 1000,
                         "reference": reference},
             "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}]}
    own = expand(parse_suite(suite)).runnable
    assert len(own) == 1 and cost._checkpoints(own[0]) == 1
    assert abs(cost.estimate_seconds(own) - (0.5 + 1000 * 0.002 + 512 * 0.01)) < 1e-9
    assert ("reinforce", 8) in probed
    shared = expand(parse_suite({
        **suite, "protocol": "shared", "train_with": "reinforce-loo",
        "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}, {"name": "exact"}]}))
    assert len(shared.runnable) == 2
    assert abs(cost.estimate_seconds(shared.runnable)
               - (2 * (0.5 + 1000 * 0.002) + 512 * 0.01)) < 1e-9
    clock = cost.Clock(shared.runnable)  # the run's ETA charges it once too
    first, second = shared.runnable
    assert cost.reference_units(first) > 0
    assert clock.units[first.key] == cost.cell_units(first) + cost.reference_units(first)
    assert clock.units[second.key] == cost.cell_units(second)


def test_the_statistics_probe_runs_the_real_engine_and_falls_back_on_failure(monkeypatch):
    import estibench.benchmarks.harness.cost as cost

    for objective in ({"name": "bernoulli_toy"}, {"name": "categorical_vae", "options": {
            "variables": 2, "categories": 3, "hidden": 8}}):
        cell = expand(parse_suite({**TINY, "objectives": [objective]})).runnable[0]
        fixed, per_replica = cost.statistics_seconds(cell)
        assert fixed >= 0 and per_replica > 0, (objective, fixed, per_replica)

    def broken(config):
        raise RuntimeError("a plugin the probe cannot run")

    monkeypatch.setattr(cost, "statistics_seconds", broken)
    monkeypatch.setattr(cost, "_timed_steps",
                        lambda o, e, x, s, steps, elapsed: elapsed.extend([0.01] * (steps + 1)))
    cell = expand(parse_suite(TINY)).runnable[0]
    rate = cost.seconds_per_unit(cell)
    assert abs(cost.estimate_seconds([cell]) - cost.cell_units(cell) * rate) < 1e-9


def test_run_returns_counts_and_failures_and_is_path_like(tmp_path):
    reported: list[Path] = []
    result = estibench.run(parse_suite(TINY), out=tmp_path / "run", device="cpu",
                            report=reported.append)
    assert (result.ok, result.failed, result.not_applicable) == (2, 0, 1)
    assert result.all_ok and result.failures == [] and result.report is None
    assert Path(result) == result.run_dir == tmp_path / "run" and reported == [result.run_dir]
    assert (Path(result) / "results.sqlite").is_file()


def test_run_writes_the_report_by_default_and_prints_progress_when_asked(tmp_path, capsys):
    result = estibench.run(parse_suite(TINY), out=tmp_path / "run", device="cpu",
                            progress=True)
    assert result.report == tmp_path / "run" / "report" / "report.html"
    assert result.report.is_file()
    printed = capsys.readouterr().out
    assert "[1/2] bernoulli_toy / reinforce-loo / S=2 / seed 0: ok" in printed


def test_non_tty_prints_a_line_per_cell_and_overrides_are_stored(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_TOML)
    out = tmp_path / "run"
    result = cli("run", str(suite), "--out", str(out), "--device", "cpu", "--no-report",
                 "--estimator", "reinforce-loo", "--seeds", "3", "--steps", "4")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert lines == [lines[0]] and lines[0].startswith(
        "[1/1] bernoulli_toy / reinforce-loo / S=2 / seed 3: ok (")
    assert "ETA" in lines[0]
    stored = json.loads((out / "suite.json").read_text())
    assert stored["seeds"] == [3] and stored["training"]["steps"] == 4
    assert [e["name"] for e in stored["estimators"]] == ["reinforce"]
    assert "--estimator reinforce-loo" in stored["description"]


def _completed(run_dir: Path) -> int:
    try:
        with sqlite3.connect(run_dir / "results.sqlite", timeout=5) as db:
            return db.execute("SELECT count(*) FROM cells WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    suite = tmp_path / "killable.toml"
    suite.write_text(KILLABLE)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "estibench.cli.app", "run", str(suite), "--out",
                             str(out), "--device", "cpu", "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"},
                            # SIGINT's default disposition whatever this process inherited: a
                            # job put in the background without job control ignores SIGINT,
                            # and a child inheriting that would never see the Ctrl-C.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while _completed(out) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"estibench run --resume {out}" in stderr and "Traceback" not in stderr
