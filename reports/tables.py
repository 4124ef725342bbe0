"""Frames -> display tables of strings, shared by the HTML and Markdown reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports.aggregate import quantity_by_key

GROUP_TITLES: dict[str, str] = {
    "bounds": "Bounds on held-out data (final checkpoint)",
    "gradients": "Gradient quality (final checkpoint; M = replicas per measurement, "
                 "† = variance precision target not met in some seeds)",
    "cost": "Cost",
}
UNMET = " †"
_KEY_LABELS = {"run": "run", "objective": "objective", "estimator": "estimator",
               "num_samples": "S", "seeds": "seeds"}
MISSING = "–"


@dataclass(frozen=True)
class Table:
    """Column headers and rows of already formatted cells."""

    columns: list[str]
    rows: list[list[str]]

    @property
    def empty(self) -> bool:
        return not self.rows


def number(value: Any) -> str:
    """Four significant digits; a dash for missing values."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return MISSING
        return f"{value:.4g}"
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def mean_se_text(mean: float, se: float) -> str:
    """``mean ± se``; the mean alone for a single seed."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return number(mean)
    return f"{number(mean)} ± {se:.2g}"


def summary_tables(summary: pd.DataFrame) -> list[tuple[str, Table]]:
    """The summary split into bounds / gradients / cost tables, each with the group keys.

    Groups without any quantity are left out.
    """
    keys = [c for c in ("run", "objective", "estimator", "num_samples", "seeds")
            if c in summary.columns]
    quantities = [q for c in summary.columns if c.endswith("_mean")
                  if (q := quantity_by_key(c.removesuffix("_mean"))) is not None]
    out = []
    for group, title in GROUP_TITLES.items():
        chosen = [q for q in quantities if q.group == group]
        if not chosen or summary.empty:
            continue
        columns = [_KEY_LABELS[k] for k in keys] + [q.label for q in chosen]
        rows = []
        for _, row in summary.iterrows():
            cells = [str(row[k]) for k in keys]
            cells += [_quantity_text(row, q) for q in chosen]
            rows.append(cells)
        out.append((title, Table(columns, rows)))
    return out


def _quantity_text(row: pd.Series, q: Any) -> str:
    if q.spread == "range":
        low, high = row.get(f"{q.key}_min"), row.get(f"{q.key}_max")
        if low is None or (isinstance(low, float) and math.isnan(low)):
            return MISSING
        text = number(low) if low == high else f"{number(low)}–{number(high)}"
    else:
        text = mean_se_text(row[f"{q.key}_mean"], row[f"{q.key}_se"])
    unmet = row.get(f"{q.key}_unmet")
    if text != MISSING and unmet is not None and not pd.isna(unmet) and unmet > 0:
        text += UNMET
    return text


BIAS_TITLE = ("Bias told from noise (final checkpoint): debiased squared bias ± SE against the "
              "noise floor tr(Var)/M, and the unbiasedness test")


def bias_display(bias: pd.DataFrame) -> Table:
    """The bias summary (`reports.bias.bias_summary`) as a table of strings."""
    keys = [c for c in ("run", "objective", "estimator", "num_samples") if c in bias.columns]
    columns = [_KEY_LABELS[k] for k in keys] + [
        "parameters", "seeds", "M", "bias² (debiased) ± SE", "noise floor tr(Var)/M", "verdict"]
    rows = []
    for _, row in bias.iterrows():
        low, high = row["replicas_min"], row["replicas_max"]
        m = MISSING if pd.isna(low) else (
            number(low) if low == high else f"{number(low)}–{number(high)}")
        rows.append([str(row[k]) for k in keys] + [
            str(row["wrt"]), str(row["seeds"]), m,
            mean_se_text(row["squared_bias"], row["squared_bias_se"]),
            number(row["noise_floor"]), str(row["verdict"]),
        ])
    return Table(columns, rows)


def frame_table(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> Table:
    """Any frame as a table; floats with four significant digits."""
    labels = labels or {}
    columns = [labels.get(str(c), str(c)) for c in frame.columns]
    rows = [
        [number(v) if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False)
    ]
    return Table(columns, rows)


def key_value_table(mapping: Mapping[str, str], headers: tuple[str, str]) -> Table:
    return Table(list(headers), [[str(k), str(v)] for k, v in mapping.items()])
