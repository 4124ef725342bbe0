"""`python -m estibench.reference_reports`: runs a suite and writes its report where the docs
link it; a dirty checkout is refused unless allowed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from estibench import reference_reports


def test_a_suite_runs_into_its_directory_and_its_report_goes_beside_the_docs(tmp_path, capsys):
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    code = reference_reports.main(["smoke", "--runs", str(runs), "--docs", str(docs),
                                   "--workers", "1", "--allow-dirty"])
    assert code == 0
    assert (runs / "smoke" / "results.sqlite").is_file()
    report = (docs / "smoke" / "report.md").read_text()
    assert "## Which estimator?" in report
    assert reference_reports.destinations("standard", runs, docs) == (runs, docs)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   capture_output=True, check=True)


def test_a_dirty_checkout_is_refused(monkeypatch, tmp_path, capsys):
    """A real checkout with a changed tracked file (an untracked one does not count)."""
    repo = tmp_path / "repo"
    (repo / "estimators").mkdir(parents=True)
    (repo / "estimators" / "base.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "notes.txt").write_text("untracked\n")
    monkeypatch.chdir(repo)
    args = ["smoke", "--runs", str(tmp_path / "r"), "--docs", str(tmp_path / "d")]
    (repo / "estimators" / "base.py").write_text("x = 2\n")
    assert reference_reports.main(args) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes (estimators/base.py)" in err and "notes.txt" not in err
    assert not Path(tmp_path / "r").exists()
