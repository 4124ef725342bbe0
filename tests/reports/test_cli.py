"""estibench.cli.report: `report` and `compare` on a typer app, and on the installed CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from estibench.benchmarks.results.store import Store
from estibench.cli import report as commands
from tests.reports.fabricate import Knobs, fabricate_problem_run, fabricate_run

WIDE = {"COLUMNS": "200"}  # rich wraps tables to the terminal width


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The two commands registered the way the lead registers them on `estibench`."""
    app = typer.Typer()
    app.command()(commands.report)
    app.command()(commands.compare)
    return app


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "a": fabricate_run(root / "a"),
        "same": fabricate_run(root / "same"),
        "slow": fabricate_run(root / "slow", Knobs(time_factor={"reinforce-loo": 2.0})),
        "noisy": fabricate_run(root / "noisy", Knobs(variance_factor={"pathwise": 10.0})),
        "problems": fabricate_problem_run(root / "problems"),
    }


runner = CliRunner()


def test_report_prints_the_paths(app: typer.Typer, runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["report", str(runs["problems"]), "--out", str(out)], env=WIDE)
    assert result.exit_code == 0, result.output
    for name in ("html", "md", "figures", "summary"):
        assert f"{name}:" in result.stdout
    assert str(out / "report.html") in result.stdout
    assert (out / "report.html").is_file()


def test_report_bad_input_exits_2(app: typer.Typer, runs: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not a run directory" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(runs["problems"]), "--format", "gif"])
    assert result.exit_code == 2
    assert "png, svg, pdf" in result.stderr


def test_compare_identical_runs_exits_0(app: typer.Typer, runs: dict[str, Path]) -> None:
    result = runner.invoke(app, ["compare", str(runs["a"]), str(runs["same"])], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "no regression" in result.stdout
    assert "time (ms)" in result.stdout and "variance" in result.stdout


@pytest.mark.parametrize("variant", ["slow", "noisy"])
def test_compare_regression_exits_1(app: typer.Typer, runs: dict[str, Path],
                                    variant: str) -> None:
    result = runner.invoke(app, ["compare", str(runs["a"]), str(runs[variant])], env=WIDE)
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.stdout
    assert "regression(s)" in result.stderr


def test_compare_thresholds_are_options(app: typer.Typer, runs: dict[str, Path]) -> None:
    args = ["compare", str(runs["a"]), str(runs["slow"]), "--time-threshold", "3"]
    assert runner.invoke(app, args, env=WIDE).exit_code == 0  # 2x is below a 3x threshold
    args = ["compare", str(runs["a"]), str(runs["noisy"]), "--variance-threshold", "20",
            "--bound-threshold", "0.5"]
    assert runner.invoke(app, args, env=WIDE).exit_code == 0


def test_compare_bad_input_exits_2(app: typer.Typer, runs: dict[str, Path],
                                   tmp_path: Path) -> None:
    result = runner.invoke(app, ["compare", str(runs["a"]), str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not a run directory" in result.stderr
    result = runner.invoke(app, ["compare", str(runs["a"]), str(runs["a"]),
                                 "--time-threshold", "0.5"])
    assert result.exit_code == 2
    assert "time threshold must be a ratio > 1" in result.stderr
    Store.open(tmp_path / "empty").close()
    result = runner.invoke(app, ["compare", str(tmp_path / "empty"), str(runs["a"])])
    assert result.exit_code == 2
    assert "no completed cells" in result.stderr


@pytest.mark.skipif(shutil.which("estibench") is None, reason="estibench is not installed")
def test_installed_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    def estibench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["estibench", *args], capture_output=True, text=True, timeout=120)

    listed = estibench("--help").stdout
    for command in ("report", "compare"):
        if not re.search(rf"^\W*{command}\b", listed, flags=re.MULTILINE):
            pytest.skip(f"the installed estibench has no `{command}` command yet: register "
                        "estibench.cli.report.report and estibench.cli.report.compare on its app")
    done = estibench("report", str(runs["problems"]), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "report.html").is_file()
    assert estibench("compare", str(runs["a"]), str(runs["same"])).returncode == 0
    assert estibench("compare", str(runs["a"]), str(runs["slow"])).returncode == 1
    missing = estibench("compare", str(runs["a"]), str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "not a run directory" in missing.stderr
