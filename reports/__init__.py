"""reports: aggregate estibench runs, draw the standard figures, write reports, compare runs.

    import reports
    frame = reports.load(run_dir)               # tidy: one row per (cell, step, metric)
    table = reports.summary_table(frame)        # mean and standard error over seeds
    paths = reports.write_report(run_dir)       # RUN_DIR/report/report.html, report.md, ...
    result = reports.compare(run_a, run_b)      # result.ok, result.regressions, result.table

Depends on `benchmarks.store` only (reports -> benchmarks -> estimators).
"""

from __future__ import annotations

from reports.aggregate import load, load_cells, problems, summary_table
from reports.compare import Comparison, Thresholds, compare
from reports.errors import ReportError
from reports.report import write_report

__all__ = [
    "Comparison",
    "ReportError",
    "Thresholds",
    "compare",
    "load",
    "load_cells",
    "problems",
    "summary_table",
    "write_report",
]
