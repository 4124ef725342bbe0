"""Frames -> display tables of strings, shared by the HTML and Markdown reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from estibench.reports.aggregate import quantity_by_key
from estibench.reports.numbers import column_format

GROUP_TITLES: dict[str, str] = {
    "bounds": "Bounds on held-out data (final checkpoint)",
    "gradients": "Gradient quality (final checkpoint; M = replicas per measurement, "
                 "† = variance precision target not met in some seeds, ≈ = within the Monte "
                 "Carlo noise of the mean)",
    "cost": "Cost ((busy) = timed with the load above the CPU count)",
}
UNMET = " †"
AT_FLOOR = " ≈"  # within the Monte Carlo noise of the mean: noise, not signal
BUSY = " (busy)"  # timed with the load above the CPU count: an upper bound
BIASED = " ‡"  # after an estimator label: biased by design
BIASED_NOTE = " (‡: biased by design)"
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


def summary_tables(summary: pd.DataFrame, biased: frozenset[str] | set[str] = frozenset()
                   ) -> list[tuple[str, Table]]:
    """The summary split into bounds / gradients / cost tables, each with the group keys, and
    each split again into VAE rows and toy rows (toys have no held-out bounds, so their rows
    would be dashes under every bound column).

    Groups without any quantity are left out, and so are columns with no value in a table.
    Every column has one number format (`estibench.reports.numbers`). Estimators in `biased`
    are marked ‡ wherever they are ranked.
    """
    keys = [c for c in ("run", "objective", "estimator", "num_samples", "seeds")
            if c in summary.columns]
    quantities = [q for c in summary.columns if c.endswith("_mean")
                  if (q := quantity_by_key(c.removesuffix("_mean"))) is not None]
    if summary.empty:
        return []
    toy = summary["elbo_mean"].isna() if "elbo_mean" in summary.columns else pd.Series(
        True, index=summary.index)
    kinds = [(rows, suffix) for rows, suffix in
             ((summary[~toy], ": VAEs"), (summary[toy], ": toys")) if not rows.empty]
    if len(kinds) == 1:
        kinds = [(kinds[0][0], "")]
    out = []
    for group, title in GROUP_TITLES.items():
        for rows, suffix in kinds:
            chosen = [q for q in quantities if q.group == group and _measured(rows, q)]
            if chosen:
                marked = "estimator" in keys and bool(set(rows["estimator"]) & set(biased))
                out.append((title + suffix + (BIASED_NOTE if marked else ""),
                            _quantity_table(rows, keys, chosen, biased)))
    return out


def _measured(rows: pd.DataFrame, q: Any) -> bool:
    column = f"{q.key}_min" if q.spread == "range" else f"{q.key}_mean"
    return column in rows.columns and bool(rows[column].notna().any())


def _quantity_table(rows: pd.DataFrame, keys: list[str], chosen: list[Any],
                    biased: frozenset[str] | set[str] = frozenset()) -> Table:
    formats = {q.key: column_format(rows[f"{q.key}_mean"], rows[f"{q.key}_se"])
               for q in chosen if q.spread != "range"}
    columns = [_KEY_LABELS[k] for k in keys] + [q.label for q in chosen]
    body = []
    for _, row in rows.iterrows():
        cells = [str(row[k]) + (BIASED if k == "estimator" and row[k] in biased else "")
                 for k in keys]
        cells += [_quantity_text(row, q, formats.get(q.key)) for q in chosen]
        body.append(cells)
    return Table(columns, body)


def _quantity_text(row: pd.Series, q: Any, fmt: Any) -> str:
    if q.spread == "range":
        low, high = row.get(f"{q.key}_min"), row.get(f"{q.key}_max")
        if low is None or (isinstance(low, float) and math.isnan(low)):
            return MISSING
        text = number(low) if low == high else f"{number(low)}–{number(high)}"
    else:
        text = fmt.text(row[f"{q.key}_mean"], row[f"{q.key}_se"])
    unmet = row.get(f"{q.key}_unmet")
    if text != MISSING and unmet is not None and not pd.isna(unmet) and unmet > 0:
        text += UNMET
    floor = row.get(f"{q.key}_floor")
    if text != MISSING and floor is not None and not pd.isna(floor) and floor > 0:
        text += AT_FLOOR
    busy = row.get(f"{q.key}_busy")
    if text != MISSING and busy is not None and not pd.isna(busy) and busy > 0:
        text += BUSY
    return text


BIAS_TITLE = ("Bias told from noise (final checkpoint): debiased squared bias ± SE against the "
              "noise floor (tr(Var)/M, plus the reference's own against a reference), and the "
              "unbiasedness test; against the exact gradient or a reference")


def bias_display(bias: pd.DataFrame) -> Table:
    """The bias summary (`estibench.reports.bias.bias_summary`) as a table of strings."""
    keys = [c for c in ("run", "objective", "estimator", "num_samples") if c in bias.columns]
    columns = [_KEY_LABELS[k] for k in keys] + [
        "parameters", "seeds", "M", "bias² (debiased) ± SE", "noise floor", "verdict",
        "bias against"]
    # each bias by its own standard error: unbiased cells (bias ~ 0 +/- tiny) and biased ones
    # (0.09 +/- 0.005) in one column would otherwise all take the smallest error's decimals
    floor_format = column_format(bias["noise_floor"], [None] * len(bias))
    rows = []
    for _, row in bias.iterrows():
        low, high = row["replicas_min"], row["replicas_max"]
        m = MISSING if pd.isna(low) else (
            number(low) if low == high else f"{number(low)}–{number(high)}")
        rows.append([str(row[k]) for k in keys] + [
            str(row["wrt"]), str(row["seeds"]), m,
            column_format([row["squared_bias"]], [row["squared_bias_se"]]).text(
                row["squared_bias"], row["squared_bias_se"]),
            floor_format.text(row["noise_floor"]), str(row["verdict"]),
            str(row.get("against", "exact")),
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
