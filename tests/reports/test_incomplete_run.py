"""A run that did not finish says so: the report counts the cells its suite plans that never
ran."""

from __future__ import annotations

import sqlite3

import estibench
from estibench import reports
from estibench.benchmarks.suites.schema import parse_suite

TINY = {"name": "tiny", "seeds": [0, 1], "num_samples": [2],
        "training": {"steps": 2}, "metrics": {"checkpoints": [-1], "replicas": 4,
                                              "throughput": False},
        "objectives": [{"name": "bernoulli_toy"}],
        "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}},
                       {"name": "pathwise"}]}


def test_the_report_of_an_interrupted_run_counts_the_cells_never_run(tmp_path):
    run_dir = estibench.run(parse_suite(TINY), out=tmp_path / "run", device="cpu",
                            report=False).run_dir
    complete = (reports.write_report(run_dir)["md"]).read_text()
    assert "0 never run" in complete and "incomplete" not in complete
    with sqlite3.connect(run_dir / "results.sqlite") as db:  # as if killed before the last cell
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM cells WHERE id = (SELECT MAX(id) FROM cells)")
    paths = reports.write_report(run_dir)
    markdown, html = paths["md"].read_text(), paths["html"].read_text()
    assert "1 never run" in markdown and "**The run is incomplete**: 1 cell(s)" in markdown
    assert "never run: <strong>1</strong>" in html and "estibench run --resume" in html
