"""Installed from a wheel, estibench is one import name and runs from any directory.

The wheel is built from this checkout and installed without dependencies into a fresh virtual
environment that sees the current one's packages (torch and the rest are not installed again).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"estibench": "estibench", "estimators": "estibench/estimators",
           "benchmarks": "estibench/benchmarks", "reports": "estibench/reports"}


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=env)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy: setuptools' build/ in the checkout may hold files since removed
    source = tmp_path_factory.mktemp("source") / "estibench"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", ".asv", "runs", "__pycache__", ".*_cache"))
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
         cwd=out)
    (found,) = out.glob("estibench-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(env)], cwd=env)
    _run([str(env / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
         cwd=env)
    return env


def test_the_wheel_holds_every_module_under_estibench(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, installed in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder)
            if "microbench" in relative.parts:  # pytest files, run from a checkout
                continue
            assert f"{installed}/{relative.as_posix()}" in names, f"{folder}/{relative}"
    for data in ("estibench/benchmarks/suites/smoke.toml", "estibench/reports/templates",
                 "estibench/py.typed"):
        assert any(n.startswith(data) for n in names), data
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"estibench", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}, tops


def test_site_packages_holds_no_generic_top_level_package(venv):
    purelib = _run([str(venv / "bin" / "python"), "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=venv).stdout.strip()
    assert Path(purelib) != Path(sysconfig.get_paths()["purelib"])
    present = {p.name for p in Path(purelib).iterdir()}
    assert "estibench" in present
    assert not present & {"estimators", "benchmarks", "reports"}, present


def test_the_public_api_imports_from_the_installed_wheel(venv, tmp_path):
    code = ("import estibench, estibench.estimators as e\n"
            "print(estibench.__file__); print(estibench.__version__)\n"
            "print(type(estibench.get('reinforce', baseline='loo')).__name__)\n"
            "print(callable(estibench.run), 'reinforce' in e.available())\n")
    out = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).stdout.split("\n")
    assert out[0].startswith(str(venv)), out  # not the checkout
    assert out[1] not in ("", "0+unknown") and out[2] == "Reinforce" and out[3] == "True True"


def test_estibench_run_smoke_from_outside_the_checkout(venv, tmp_path):
    result = _run([str(venv / "bin" / "estibench"), "run", "smoke", "--out", "smoke",
                   "--no-report"], cwd=tmp_path)
    assert (tmp_path / "smoke" / "results.sqlite").is_file(), result.stdout


def test_a_project_with_its_own_benchmarks_and_reports_packages(venv, tmp_path):
    for name in ("benchmarks", "reports", "estimators"):  # asv's default layout, and more
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    code = ("import benchmarks, reports, estimators\n"
            "assert benchmarks.MINE and reports.MINE and estimators.MINE\n"
            "from estibench import reports as r; from estibench.cli.catalogue import "
            "shipped_suites\n"
            "print(r.__name__, 'smoke' in shipped_suites())\n")
    out = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path).stdout
    assert out.split() == ["estibench.reports", "True"]
    listed = _run([str(venv / "bin" / "estibench"), "list", "suites"], cwd=tmp_path).stdout
    assert "smoke" in listed.split()
