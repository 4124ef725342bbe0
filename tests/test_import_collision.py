"""A project's own `benchmarks/` package shadowing estibench's is detected and explained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, project: Path) -> subprocess.CompletedProcess:
    # The project's folder comes first on sys.path, as with PYTHONPATH=. or a notebook there.
    path = os.pathsep.join([str(project), str(ROOT)])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=project, env={**os.environ, "PYTHONPATH": path})


def _asv_project(tmp_path: Path) -> Path:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")  # asv's default layout
    (tmp_path / "benchmarks" / "bench_model.py").write_text("def time_model():\n    pass\n")
    return tmp_path


def test_the_console_script_says_what_shadows_the_harness(tmp_path):
    project = _asv_project(tmp_path)
    result = _python("import sys; sys.argv = ['estibench', '--help']\n"
                     "from reports.entry import main; main()", project)
    assert result.returncode == 2, result.stderr
    assert str(project / "benchmarks") in result.stderr
    assert "shadows" in result.stderr and "PYTHONPATH" in result.stderr
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr


def test_using_reports_names_the_shadowing_package(tmp_path):
    project = _asv_project(tmp_path)
    result = _python("import reports; reports.load('.')", project)
    assert result.returncode == 1
    assert "ShadowedHarnessError" in result.stderr and "not estibench's harness" in result.stderr
    assert "rename the project's own benchmarks package" in result.stderr


def test_without_a_collision_the_console_script_runs(tmp_path):
    result = _python("import sys; sys.argv = ['estibench', 'list', 'suites']\n"
                     "from reports.entry import main; main()", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "smoke" in result.stdout.split()


def test_the_console_script_is_the_guarded_entry():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'estibench = "reports.entry:main"' in text
