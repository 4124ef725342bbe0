"""The report says what ran: the cells of an interrupted run that never ran, and which ranked
estimators are biased by design."""

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


def test_biased_estimators_are_marked_wherever_they_are_ranked(tmp_path):
    """The relaxation and STL-IWAE (direct_term = False, biased for K > 1) are marked ‡ in the
    summary tables; REINFORCE with RLOO and IWAE are not."""
    from estibench.reports.aggregate import load_cells
    from estibench.reports.conventions import biased_estimators

    suite = {**TINY, "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}},
                                    {"name": "gumbel_softmax"}]}
    run_dir = estibench.run(parse_suite(suite), out=tmp_path / "run", device="cpu",
                            report=False).run_dir
    assert biased_estimators(load_cells(run_dir)) == {"gumbel_softmax"}
    markdown = reports.write_report(run_dir)["md"].read_text()
    assert "gumbel_softmax ‡" in markdown and "reinforce-loo ‡" not in markdown
    assert "(‡: biased by design)" in markdown
    from estibench import estimators

    assert estimators.get("iwae").unbiased
    assert estimators.get("iwae", direct_term=False).unbiased is False
