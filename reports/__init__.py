"""estibench.reports: aggregate runs, draw the standard figures, write reports, compare runs.

    from estibench import reports
    frame = reports.load(run_dir)                # tidy: one row per (cell, step, metric)
    table = reports.summary_table(frame)         # mean and standard error over seeds
    paths = reports.write_report(run_dir)        # RUN_DIR/report/report.html, report.md, ...
    result = reports.compare(run_a, run_b)       # result.ok, result.regressions, result.table

Reads runs through `estibench.benchmarks.results` (the store) and nothing above it. The names
are imported on first use, so that the CLI can register its report commands without pandas.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {
    "Comparison": "estibench.reports.compare", "Thresholds": "estibench.reports.compare",
    "compare": "estibench.reports.compare", "ReportError": "estibench.reports.errors",
    "load": "estibench.reports.aggregate", "load_cells": "estibench.reports.aggregate",
    "problems": "estibench.reports.aggregate", "summary_table": "estibench.reports.aggregate",
    "write_report": "estibench.reports.report",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'estibench.reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule `estibench.reports.compare` binds it on the package; the name
        # stays
        # the function `compare`, as it was when this module imported everything eagerly.
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = sorted(_WHERE)
