"""Everything a report shows, gathered once and handed to the HTML and Markdown templates."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from estibench.reports.aggregate import (
    final_values,
    load_suite_config,
    missing_cells,
    problems_of,
)
from estibench.reports.bias import bias_summary
from estibench.reports.claims import ClaimTables, claim_tables
from estibench.reports.conventions import biased_estimators, conventions
from estibench.reports.figures.axes import RenderedFigure, SkippedFigure
from estibench.reports.glossary import NOTES
from estibench.reports.load import busy_note
from estibench.reports.ranking import ranking, sections
from estibench.reports.tables import (
    BIAS_TITLE,
    Table,
    bias_display,
    frame_table,
    key_value_table,
    summary_tables,
)
from estibench.reports.toml_text import to_toml

CONVENTIONS_TITLE = "Conventions that ran (per objective, estimator and S)"

# Environment keys shown first, in this order; the rest follow sorted.
_ENV_ORDER = ("device", "torch", "python", "commit", "dirty", "host", "threads")
_PROBLEM_LABELS = {"num_samples": "S"}


@dataclass(frozen=True)
class ReportData:
    title: str
    run_dir: Path
    generated: str
    suite_name: str
    description: str
    counts: dict[str, int]
    has_completed: bool
    environment: Table
    suite_toml: str | None  # the suite as the TOML a user writes
    summary_tables: list[tuple[str, Table]]
    failed: Table
    not_applicable: Table
    reference_note: str
    busy_note: str
    figures: list[RenderedFigure]
    skipped: list[SkippedFigure]
    notes: tuple[tuple[str, str], ...] = field(default=NOTES)
    claims: ClaimTables = field(default_factory=ClaimTables)
    # "Which estimator?": (title, the answer's sentence, the ranked table) per objective
    answer: list[tuple[str, str, Table]] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def environment_table(cells: pd.DataFrame, run_environment: Mapping[str, Any]) -> Table:
    """Environment keys with their value, or every distinct value when cells differ.

    Cell environments (recorded where each cell ran) win over the run's (the client's).
    """
    values: dict[str, list[str]] = {k: [_text(v)] for k, v in run_environment.items()}
    cell_values: dict[str, list[str]] = {}
    for env in cells["environment"]:
        for key, value in (env or {}).items():
            seen = cell_values.setdefault(key, [])
            if _text(value) not in seen:
                seen.append(_text(value))
    values.update(cell_values)
    ordered = [k for k in _ENV_ORDER if k in values] + sorted(k for k in values
                                                              if k not in _ENV_ORDER)
    shown = {
        k: values[k][0] if len(values[k]) == 1 else "; ".join(values[k]) + " (differs by cell)"
        for k in ordered
    }
    return key_value_table(shown, ("key", "value"))


def _suite_text(suite: dict[str, Any]) -> str:
    """The stored suite as TOML; as JSON if it holds something TOML cannot say."""
    try:
        return to_toml(suite)
    except TypeError:
        return json.dumps(suite, indent=2, sort_keys=True)


def reference_note(frame: pd.DataFrame) -> str:
    """Which objectives have an exact log p(x) and which only a high-k IWAE reference."""
    finals = final_values(frame)
    if "test/log_marginal_exact" not in finals.columns:
        return ""
    flags = finals.dropna(subset=["test/log_marginal_exact"]).groupby("objective")[
        "test/log_marginal_exact"].min()
    exact = sorted(str(o) for o, f in flags.items() if f == 1)
    reference = sorted(str(o) for o, f in flags.items() if f != 1)
    parts = []
    if exact:
        parts.append(f"log p(x) is exact for {', '.join(exact)}")
    if reference:
        parts.append(f"log p(x) is a high-k IWAE reference (a lower bound, not the truth) for "
                     f"{', '.join(reference)}")
    return "; ".join(parts) + "." if parts else ""


def all_tables(cells: pd.DataFrame, frame: pd.DataFrame,
               summary: pd.DataFrame) -> list[tuple[str, Table]]:
    """The summary tables, then the bias table and the conventions table where they apply."""
    tables = summary_tables(summary, biased_estimators(cells))
    if summary.empty:
        return tables
    bias = bias_summary(frame)
    if not bias.empty:
        tables.append((BIAS_TITLE, bias_display(bias)))
    table = conventions(cells, frame)
    if not table.empty:
        tables.append((CONVENTIONS_TITLE, frame_table(table)))
    return tables


def collect(
    run_dir: Path,
    cells: pd.DataFrame,
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    figures: list[RenderedFigure],
    skipped: list[SkippedFigure],
) -> ReportData:
    """Assemble the report's content from the loaded run."""
    suite = load_suite_config(run_dir)
    suite_name = str((suite or {}).get("name") or (runs["suite"].iloc[-1] if len(runs) else "?"))
    run_environment = runs["environment"].iloc[-1] if len(runs) else {}
    statuses = cells["status"]
    found = problems_of(cells)

    def problems(status: str) -> Table:
        rows = found[found["status"] == status].drop(columns="status")
        return frame_table(rows, _PROBLEM_LABELS)

    return ReportData(
        title=f"estibench report: {suite_name}",
        run_dir=run_dir,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        suite_name=suite_name,
        description=str((suite or {}).get("description", "")),
        counts={**{s: int((statuses == s).sum()) for s in ("ok", "failed", "not_applicable")},
                "missing": missing_cells(suite, cells)},
        has_completed=bool((statuses == "ok").any()),
        environment=environment_table(cells, run_environment),
        suite_toml=None if suite is None else _suite_text(suite),
        summary_tables=all_tables(cells, frame, summary),
        failed=problems("failed"),
        not_applicable=problems("not_applicable"),
        reference_note=reference_note(frame),
        busy_note=busy_note(frame),
        figures=figures,
        skipped=skipped,
        claims=claim_tables(run_dir),
        answer=sections(ranking(frame, biased_estimators(cells))) if len(frame) else [],
    )
