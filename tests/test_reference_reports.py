"""`python -m estibench.reference_reports`: runs a suite and writes its report where the docs
link it; a dirty checkout is refused unless allowed."""

from __future__ import annotations

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


def test_a_dirty_checkout_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(reference_reports, "dirty", lambda root: ["estimators/base.py"])
    code = reference_reports.main(["smoke", "--runs", str(tmp_path / "r"),
                                   "--docs", str(tmp_path / "d")])
    assert code == 2
    assert "uncommitted changes (estimators/base.py)" in capsys.readouterr().err
    assert not Path(tmp_path / "r").exists()
