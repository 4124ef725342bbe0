"""Regression tracking: the gate on hand-written asv results, and record + gate end to end.

The end-to-end test builds a throwaway git repository with two commits of a tiny package whose
second commit makes `work()` 3x slower, records both commits with asv in the existing
environment (no environment is ever built; HOME points at tmp_path so the user's
~/.asv-machine.json is untouched), and checks that the gate flags the slowdown and passes a
commit compared with itself.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from estibench.benchmarks.regression import tracking as regression
from estibench.benchmarks.regression.tracking import (
    Value,
    compare_values,
    gate,
    main,
    read_result_file,
)

BASE = "a" * 40
HEAD = "b" * 40
COLUMNS = ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
           "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat",
           "samples", "profile"]
PARAMS = [["'vae'", "'toy'"], ["'reinforce'", "'exact'"]]


def write_results(directory: Path, commit: str, results: dict[str, list], machine: str = "m",
                  env: str = "existing-py_python") -> Path:
    """An asv (format 2) result file, shaped like the ones `asv run` writes."""
    folder = directory / machine
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    data = {
        "commit_hash": commit, "env_name": env, "date": 1_700_000_000_000,
        "params": {"machine": machine, "python": "python"}, "python": "python",
        "requirements": {}, "env_vars": {}, "result_columns": COLUMNS,
        "results": results, "durations": {}, "version": 2,
    }
    path = folder / f"{commit[:8]}-{env}.json"
    # asv writes skipped parameter combinations as NaN (json's allow_nan) and failures as null
    path.write_text(json.dumps(data))
    return path


def write_units(directory: Path, units: dict[str, str]) -> None:
    """asv's benchmarks.json: each benchmark's unit and type (its method's prefix)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "benchmarks.json").write_text(json.dumps(
        {name: {"name": name, "unit": unit, "type": name.rsplit(".", 1)[1].split("_")[0]}
         for name, unit in units.items()} | {"version": 2}))


def row(values: list, params: list | None = None) -> list:
    """One benchmark's row; trailing columns left out, as asv does when they are empty."""
    return [values, params if params is not None else PARAMS, "v1", 0, 1.0]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    directory = tmp_path / "results"
    write_units(directory, {
        "speed.Est.time_step": "seconds",
        "metrics.Var.track_log10_variance": "log10(variance)",
        "metrics.Mem.track_memory": "bytes",
        "metrics.Tps.track_time_per_sample": "seconds",
    })
    nan = float("nan")
    write_results(directory, BASE, {
        # (vae, reinforce), (vae, exact), (toy, reinforce), (toy, exact)
        "speed.Est.time_step": row([1.0e-3, 2.0e-3, nan, 1.0e-4]),
        "metrics.Var.track_log10_variance": row([0.50, -1.0, 2.0, nan]),
        "metrics.Mem.track_memory": row([1000.0, 0.0, 5.0, 7.0]),
        "metrics.Tps.track_time_per_sample": row([1.0e-6, 1.0e-6, nan, nan]),
        "speed.Old.time_removed": row([1.0], []),
    })
    write_results(directory, HEAD, {
        "speed.Est.time_step": row([1.4e-3, 4.1e-3, nan, 0.4e-4]),
        "metrics.Var.track_log10_variance": row([0.66, -0.7, 1.5, nan]),
        "metrics.Mem.track_memory": row([1400.0, 0.0, None, 7.0]),
        "metrics.Tps.track_time_per_sample": row([1.2e-6, 3.0e-6, nan, nan]),
        "speed.New.time_added": row([1.0], []),
    })
    return directory


def verdicts(rows) -> dict[str, str]:
    return {r.name: r.verdict for r in rows}


def test_read_result_file_maps_values_to_parameter_combinations(results: Path):
    values = read_result_file(next((results / "m").glob("aaaaaaaa-*.json")),
                              regression.benchmark_info(results))
    assert values["speed.Est.time_step(vae, reinforce)"].value == 1.0e-3
    assert values["speed.Est.time_step(vae, exact)"].value == 2.0e-3
    assert math.isnan(values["speed.Est.time_step(toy, reinforce)"].value)  # skipped
    assert values["speed.Est.time_step(toy, exact)"].value == 1.0e-4
    assert values["metrics.Var.track_log10_variance(vae, exact)"].unit == "log10(variance)"
    assert values["speed.Old.time_removed"].value == 1.0  # not parameterized: no suffix
    assert values["speed.Old.time_removed"].unit == "seconds"  # from the time_ prefix


def test_gate_on_hand_written_results(results: Path):
    status, rows = gate(BASE, HEAD, factor=1.5, results_dir=results)
    v = verdicts(rows)
    assert status == 1
    assert v["speed.Est.time_step(vae, reinforce)"] == "same"  # x1.4 < x1.5
    assert v["speed.Est.time_step(vae, exact)"] == "worse"  # x2.05
    assert v["speed.Est.time_step(toy, reinforce)"] == "n/a"  # skipped on both
    assert v["speed.Est.time_step(toy, exact)"] == "better"  # x0.4
    # log10 units: a difference against log10(1.5) = 0.176, never a ratio
    assert v["metrics.Var.track_log10_variance(vae, reinforce)"] == "same"  # +0.16
    assert v["metrics.Var.track_log10_variance(vae, exact)"] == "worse"  # +0.30 (x2 variance)
    assert v["metrics.Var.track_log10_variance(toy, reinforce)"] == "better"  # -0.5
    assert v["metrics.Mem.track_memory(vae, reinforce)"] == "same"  # x1.4
    assert v["metrics.Mem.track_memory(vae, exact)"] == "same"  # 0 -> 0
    assert v["metrics.Mem.track_memory(toy, reinforce)"] == "failed"  # null at head
    # a tracked wall-clock time has no confidence interval: reported, not gated
    assert v["metrics.Tps.track_time_per_sample(vae, reinforce)"] == "same"
    assert v["metrics.Tps.track_time_per_sample(vae, exact)"] == "unverified"
    assert v["speed.Old.time_removed"] == "gone"
    assert v["speed.New.time_added"] == "new"
    regressions = {r.name for r in rows if r.regression}
    assert regressions == {"speed.Est.time_step(vae, exact)",
                           "metrics.Var.track_log10_variance(vae, exact)",
                           "metrics.Mem.track_memory(toy, reinforce)"}


def test_gate_cli_exit_codes_and_table(results: Path, capsys):
    assert main(["gate", BASE, HEAD, "--results-dir", str(results)]) == 1
    out = capsys.readouterr().out
    assert "speed.Est.time_step(vae, exact)" in out and "x2.05" in out and "worse" in out
    assert "+0.300" in out  # the log10 difference is printed as a difference
    assert "3 regression(s) beyond x1.5" in out
    assert main(["gate", BASE, BASE, "--results-dir", str(results)]) == 0
    # a looser factor lets the x2.05 slowdown and the +0.30 log10 through; the failure stays
    assert main(["gate", BASE[:8], HEAD[:8], "--factor", "2.5", "--results-dir",
                 str(results)]) == 1
    assert "1 regression(s)" in capsys.readouterr().out
    assert main(["gate", BASE, "c" * 40, "--results-dir", str(results)]) == 2
    assert "no asv results for commit cccccccccccc" in capsys.readouterr().err
    assert main(["gate", BASE, HEAD, "--factor", "0.9", "--results-dir", str(results)]) == 2


def test_gate_rules_for_signs_and_failures():
    def value(v):
        return Value("b", "b", v, "nats", None)

    assert compare_values(value(-1.0), value(-0.4), 1.5).verdict == "worse"  # +0.6 > 0.5 x 1
    assert compare_values(value(-1.0), value(-0.6), 1.5).verdict == "same"
    assert compare_values(value(0.0), value(1e-9), 1.5).verdict == "worse"  # from zero: any
    assert compare_values(value(None), value(1.0), 1.5).verdict == "fixed"
    assert compare_values(value(float("nan")), value(1.0), 1.5).verdict == "n/a"
    assert not compare_values(value(None), value(None), 1.5).regression


def test_gate_reports_overlapping_timings_as_noise(tmp_path: Path):
    # columns: result, params, version, started_at, duration, stats_ci_99_a, stats_ci_99_b
    write_results(tmp_path, BASE, {"s.B.time_x": [[1.0, 1.0], [["1", "2"]], "v", 0, 1.0,
                                                  [0.9, 0.95], [1.1, 1.05]]})
    write_results(tmp_path, HEAD, {"s.B.time_x": [[2.0, 2.0], [["1", "2"]], "v", 0, 1.0,
                                                  [1.0, 1.9], [3.0, 2.1]]})
    status, rows = gate(BASE, HEAD, factor=1.5, results_dir=tmp_path)
    assert verdicts(rows) == {"s.B.time_x(1)": "noise", "s.B.time_x(2)": "worse"}
    assert status == 1
    status, rows = gate(BASE, HEAD, factor=1.5, results_dir=tmp_path, significance=False)
    assert verdicts(rows) == {"s.B.time_x(1)": "worse", "s.B.time_x(2)": "worse"}


def test_gate_without_significance_flags_tracked_timings(results: Path):
    _, rows = gate(BASE, HEAD, factor=1.5, results_dir=results, significance=False)
    assert verdicts(rows)["metrics.Tps.track_time_per_sample(vae, exact)"] == "worse"
    assert main(["gate", BASE, HEAD, "--no-significance", "--results-dir", str(results)]) == 1


def test_gate_marks_results_of_different_benchmark_code(tmp_path: Path):
    write_results(tmp_path, BASE, {"s.B.time_x": [[1.0], [], "old", 0, 1.0]})
    write_results(tmp_path, HEAD, {"s.B.time_x": [[3.0], [], "new", 0, 1.0]})
    _, rows = gate(BASE, HEAD, results_dir=tmp_path)
    assert rows[0].verdict == "worse" and rows[0].code_changed
    assert "worse *" in regression.format_table(rows)
    assert "code differs" in regression.format_table(rows)


def test_gate_refuses_ambiguous_machines(results: Path, tmp_path: Path):
    write_results(results, HEAD, {"speed.Est.time_step": row([1.0, 1.0, 1.0, 1.0])},
                  machine="other")
    assert main(["gate", BASE, HEAD, "--results-dir", str(results)]) == 2
    assert main(["gate", BASE, HEAD, "--machine", "m", "--results-dir", str(results)]) == 1


# ----------------------------------------------------------------------------- end to end

TINY_CONFIG = {
    "version": 1, "project": "tiny", "repo": ".", "branches": ["main"], "dvcs": "git",
    "environment_type": "existing", "benchmark_dir": "bench", "env_dir": ".asv/env",
    "results_dir": ".asv/results", "html_dir": ".asv/html",
}
BENCHMARK = """
import tinypkg


class Work:
    repeat = (3, 6, 4.0)
    warmup_time = 0.0
    number = 1

    def time_work(self):
        tinypkg.work()
"""
WORK = "import time\n\n\ndef work():\n    time.sleep({seconds})\n"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def tiny_repo(tmp_path: Path, monkeypatch) -> tuple[Path, str, str]:
    """Two commits of `tinypkg`: work() sleeps 10 ms, then 30 ms. The asv suite (bench/) is the
    same in both; only the code under test changes, as in a real regression."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # asv's machine file goes here
    (tmp_path / "home").mkdir()
    repo = tmp_path / "tiny"
    (repo / "bench").mkdir(parents=True)
    (repo / "tinypkg").mkdir()
    (repo / "asv.conf.json").write_text(json.dumps(TINY_CONFIG, indent=2))
    (repo / ".gitignore").write_text(".asv/\n__pycache__/\n")
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "bench_work.py").write_text(textwrap.dedent(BENCHMARK))
    (repo / "tinypkg" / "__init__.py").write_text(WORK.format(seconds=0.01))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "fast")
    fast = _git(repo, "rev-parse", "HEAD")
    (repo / "tinypkg" / "__init__.py").write_text(WORK.format(seconds=0.03))
    _git(repo, "commit", "-q", "-am", "3x slower")
    slow = _git(repo, "rev-parse", "HEAD")
    return repo, fast, slow


def test_record_and_gate_end_to_end(tiny_repo, capsys):
    repo, fast, slow = tiny_repo
    config = str(repo / "asv.conf.json")
    commits = regression.commits_to_record(repo, count=2)
    assert commits == [fast, slow]  # oldest first
    assert regression.commits_to_record(repo, spec=f"{fast}..{slow}") == [slow]

    # the documented command: python -m estibench.benchmarks.regression record --commits 2
    # --machine ...
    assert main(["record", "--commits", "2", "--machine", "testmachine", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "recorded 2 of 2 commit(s)" in out
    machine_file = Path.home() / ".asv-machine.json"
    assert "testmachine" in json.loads(machine_file.read_text())
    folder = repo / ".asv" / "results" / "testmachine"
    for sha in (fast, slow):
        (path,) = folder.glob(f"{sha[:8]}-existing-*.json")
        values = read_result_file(path)
        seconds = values["bench_work.Work.time_work"].value
        assert seconds is not None and seconds >= (0.01 if sha == fast else 0.03)
    assert _git(repo, "worktree", "list").count("\n") == 0  # only the main checkout

    assert main(["gate", fast, slow, "--factor", "1.5", "--config", config]) == 1
    out = capsys.readouterr().out
    assert "bench_work.Work.time_work" in out and "worse" in out
    assert main(["gate", fast, fast, "--factor", "1.5", "--config", config]) == 0
    assert main(["gate", slow, fast, "--config", config]) == 0  # faster is never a failure

    published = subprocess.run([sys.executable, "-m", "asv", "publish", "--config", config],
                               cwd=repo, capture_output=True, text=True)
    assert published.returncode == 0, published.stderr
    assert (repo / ".asv" / "html" / "index.html").is_file()


def test_history_is_one_offline_page_with_the_gate_s_marks(results: Path, tmp_path: Path):
    """Every recorded commit oldest first (by asv's date), each value marked with the gate's
    verdict against the commit before, a sparkline per benchmark, nothing loaded from
    anywhere (no script, no link, no remote image)."""
    head = next((results / "m").glob("bbbbbbbb-*.json"))
    data = json.loads(head.read_text())
    head.write_text(json.dumps({**data, "date": data["date"] + 60_000}))  # recorded later
    out = tmp_path / "history.html"
    assert main(["history", "--results-dir", str(results), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.index("<th>aaaaaaaa</th>") < page.index("<th>bbbbbbbb</th>")  # oldest first
    exact_row = next(line for line in page.split("<tr>")
                     if "speed.Est.time_step(vae, exact)" in line)
    assert 'class="worse"' in exact_row and "<svg" in exact_row
    assert 'class="failed"' in next(line for line in page.split("<tr>")
                                    if "metrics.Mem.track_memory(toy, reinforce)" in line)
    for remote in ("<script", "<link", "src=", "http://", "https://"):
        assert remote not in page, remote
    assert main(["history", "--results-dir", str(tmp_path / "none"), "--out", str(out)]) == 2
