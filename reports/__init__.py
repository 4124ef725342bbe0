"""reports: aggregate estibench runs, draw the standard figures, write reports, compare runs.

    import reports
    frame = reports.load(run_dir)               # tidy: one row per (cell, step, metric)
    table = reports.summary_table(frame)        # mean and standard error over seeds
    paths = reports.write_report(run_dir)       # RUN_DIR/report/report.html, report.md, ...
    result = reports.compare(run_a, run_b)      # result.ok, result.regressions, result.table

Depends on `benchmarks.store` only (reports -> benchmarks -> estimators); a project's own
`benchmarks/` package shadowing it is reported by `reports.imports`. The names are imported
on first use: `reports.commands`, which the CLI registers at start-up, must not pull
in pandas.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {
    "Comparison": "reports.compare", "Thresholds": "reports.compare",
    "compare": "reports.compare", "ReportError": "reports.errors",
    "load": "reports.aggregate", "load_cells": "reports.aggregate",
    "problems": "reports.aggregate", "summary_table": "reports.aggregate",
    "write_report": "reports.report",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule `reports.compare` binds it on the package; the name stays
        # the function `compare`, as it was when this module imported everything eagerly.
        if name in _WHERE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = sorted(_WHERE)
