"""Compare two runs and flag regressions that are larger than the noise.

For every (objective, estimator, num_samples) that completed in both runs:

- time per estimate and gradient total variance (distribution parameters, final checkpoint):
  the ratio B / A of geometric means over seeds. A regression needs the ratio above its
  threshold *and* significantly above 1: ``log(ratio) - z * se > 0``, where ``se`` combines
  the standard errors over seeds of both runs (in log units) with, for time, the timing IQR
  of each cell and, for variance, the confidence interval of each cell's variance estimate.
  With one seed and no IQR / CI the noise is unknown and the threshold alone decides.
- final test ELBO: the difference B - A of means (nats); a regression is a drop larger than
  the bound threshold and significant at the same z.

Pairs that completed in A but only failed in B are regressions too; pairs present in one run
only are listed with a note.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from estibench.reports.aggregate import (
    final_values,
    load,
    load_cells,
    load_suite_config,
    missing_cells,
)
from estibench.reports.errors import ReportError

KEYS = ["objective", "estimator", "num_samples"]
TIME = "time/time_per_estimate"
TIME_IQR = "time/time_per_estimate_iqr"
VARIANCE = "grad/distribution/total_variance"
VARIANCE_CI = ("grad/distribution/total_variance_ci_lo", "grad/distribution/total_variance_ci_hi")
ELBO = "test/elbo"
_IQR_TO_SD = 1.349  # IQR of a normal distribution in standard deviations
_Z95 = 1.96  # the variance CI is taken to be a 95% interval
TABLE_COLUMNS = [*KEYS, "quantity", "a", "b", "change", "change_lo", "change_hi", "threshold",
                 "seeds_a", "seeds_b", "regression", "note"]


@dataclass(frozen=True)
class Thresholds:
    """When a change counts as a regression (see the module docstring)."""

    time: float = 1.5  # ratio B/A of time per estimate
    variance: float = 3.0  # ratio B/A of gradient total variance
    bound: float = 1.0  # drop of the final test ELBO, nats
    z: float = 2.0  # standard errors the change must clear

    def __post_init__(self) -> None:
        for name in ("time", "variance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 1):
                raise ReportError(f"{name} threshold must be a ratio > 1, got {value}")
        if not (math.isfinite(self.bound) and self.bound >= 0):
            raise ReportError(f"bound threshold must be >= 0 nats, got {self.bound}")
        if not (math.isfinite(self.z) and self.z >= 0):
            raise ReportError(f"z must be >= 0, got {self.z}")


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: one table row per (pair, quantity)."""

    run_a: Path
    run_b: Path
    thresholds: Thresholds
    table: pd.DataFrame
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no regression was found."""
        return not self.regressions


@dataclass(frozen=True)
class _Side:
    """One run's cells of one pair for one quantity: values and per-cell relative noise."""

    values: np.ndarray  # log values (ratio quantities) or raw values (bound)
    noise: np.ndarray  # per-cell measurement sd in the same units (0 where unknown)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def se(self) -> float:
        """SE of the mean: seed spread plus the cells' own measurement noise."""
        seeds = float(self.values.std(ddof=1)) / math.sqrt(self.n) if self.n > 1 else 0.0
        measured = float(np.sqrt(np.mean(self.noise**2) / self.n))
        return math.hypot(seeds, measured)


def _column(cells: pd.DataFrame, name: str) -> np.ndarray:
    if name not in cells.columns:
        return np.full(len(cells), np.nan)
    return cells[name].to_numpy(dtype=float)


def _time_side(cells: pd.DataFrame) -> _Side | None:
    t, iqr = _column(cells, TIME), _column(cells, TIME_IQR)
    keep = np.isfinite(t) & (t > 0)
    if not keep.any():
        return None
    noise = np.where(np.isfinite(iqr[keep]), iqr[keep] / _IQR_TO_SD / t[keep], 0.0)
    return _Side(np.log(t[keep]), noise)


def _variance_side(cells: pd.DataFrame) -> _Side | None:
    v, lo, hi = (_column(cells, m) for m in (VARIANCE, *VARIANCE_CI))
    keep = np.isfinite(v) & (v > 0)  # zero variance (exact) has no log ratio
    if not keep.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        width = (np.log(hi[keep]) - np.log(lo[keep])) / (2 * _Z95)
    noise = np.where(np.isfinite(width), width, 0.0)
    return _Side(np.log(v[keep]), noise)


def _bound_side(cells: pd.DataFrame) -> _Side | None:
    elbo = _column(cells, ELBO)
    keep = np.isfinite(elbo)
    return _Side(elbo[keep], np.zeros(int(keep.sum()))) if keep.any() else None


def _row(pair: tuple, quantity: str, a: _Side, b: _Side, thresholds: Thresholds) -> dict:
    """One table row; ``regression`` already decided."""
    se = math.hypot(a.se, b.se)
    z = thresholds.z
    note = "" if se > 0 else "no noise estimate (one seed, no IQR or CI): threshold only"
    if quantity == "test ELBO":
        diff = b.mean - a.mean
        regression = diff < -thresholds.bound and diff + z * se < 0
        values = (a.mean, b.mean, diff, diff - z * se, diff + z * se, -thresholds.bound)
    else:
        threshold = thresholds.time if quantity == "time per estimate" else thresholds.variance
        log_ratio = b.mean - a.mean
        ratio = math.exp(log_ratio)
        regression = ratio > threshold and log_ratio - z * se > 0
        values = (math.exp(a.mean), math.exp(b.mean), ratio, math.exp(log_ratio - z * se),
                  math.exp(log_ratio + z * se), threshold)
    return dict(zip(TABLE_COLUMNS, [*pair, quantity, *values, a.n, b.n, regression, note],
                    strict=True))


_QUANTITIES = (("time per estimate", _time_side), ("gradient variance", _variance_side),
               ("test ELBO", _bound_side))


def _describe(row: dict, z: float) -> str:
    pair = f"{row['objective']} / {row['estimator']} (S={row['num_samples']})"
    if row["quantity"] == "test ELBO":
        return (f"{pair}: test ELBO dropped by {-row['change']:.4g} nats "
                f"({row['a']:.4g} -> {row['b']:.4g})")
    return (f"{pair}: {row['quantity']} x{row['change']:.3g} "
            f"(range at z={z:g}: x{row['change_lo']:.3g} to x{row['change_hi']:.3g}; "
            f"threshold x{row['threshold']:.3g})")


def _listing(labels: list[str], limit: int = 6) -> str:
    """The first few labels, then how many more: notes stay short for big suites."""
    shown = ", ".join(labels[:limit])
    return shown if len(labels) <= limit else f"{shown} and {len(labels) - limit} more"


# runs are matched by the cells' stored labels (their identity); rows show the display ones,
# which depend on what else a run holds (reinforce beside reinforce-loo reads
# reinforce(baseline=none))
MATCH = ["stored_objective", "stored_estimator", "num_samples"]


def _pairs(finals: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    if finals.empty:
        return {}
    return {tuple(k): g for k, g in finals.groupby(MATCH, sort=True, dropna=False)}


def _shown(group: pd.DataFrame) -> tuple:
    """A pair's (objective, estimator, S) as its run displays them."""
    first = group.iloc[0]
    return (first["objective"], first["estimator"], first["num_samples"])


def _failed_only(cells: pd.DataFrame) -> dict[tuple, str]:
    """Pairs whose cells all failed, with the first reason."""
    out = {}
    for key, group in cells.groupby(MATCH, sort=True, dropna=False):
        if (group["status"] == "failed").all():
            reasons = group["reason"].dropna()
            out[tuple(key)] = str(reasons.iloc[0]) if len(reasons) else "failed"
    return out


def compare(
    run_a: str | os.PathLike[str],
    run_b: str | os.PathLike[str],
    threshold: Thresholds | None = None,
) -> Comparison:
    """Compare run B against baseline run A; see the module docstring for the rules."""
    thresholds = threshold or Thresholds()
    finals_a, finals_b = final_values(load(run_a)), final_values(load(run_b))
    for name, finals, path in (("A", finals_a, run_a), ("B", finals_b, run_b)):
        if finals.empty:
            raise ReportError(f"nothing to compare: run {name} ({str(path)!r}) has no "
                              "completed cells")
    pairs_a, pairs_b = _pairs(finals_a), _pairs(finals_b)
    cells = {"A": load_cells(run_a), "B": load_cells(run_b)}
    failed_b = _failed_only(cells["B"])
    rows, regressions, notes = [], [], []
    only: dict[str, list[str]] = {"A": [], "B": []}
    for pair in sorted(set(pairs_a) | set(pairs_b), key=str):
        shown = _shown(pairs_b[pair] if pair in pairs_b else pairs_a[pair])
        label = f"{shown[0]} / {shown[1]} (S={shown[2]})"
        if pair not in pairs_b:
            if pair in failed_b:
                regressions.append(f"{label}: completed in run A but failed in run B: "
                                   f"{failed_b[pair]}")
            else:
                only["A"].append(label)
            continue
        if pair not in pairs_a:
            only["B"].append(label)
            continue
        for quantity, side in _QUANTITIES:
            a, b = side(pairs_a[pair]), side(pairs_b[pair])
            if a is None or b is None:
                continue
            row = _row(shown, quantity, a, b, thresholds)
            rows.append(row)
            if row["regression"]:
                regressions.append(_describe(row, thresholds.z))
    for name, labels in only.items():
        if labels:
            notes.append(f"{len(labels)} pair(s) completed only in run {name}: "
                         f"{_listing(labels)}")
    for name, path in (("A", run_a), ("B", run_b)):
        missing = missing_cells(load_suite_config(path), cells[name])
        if missing:
            notes.append(f"run {name} is incomplete: {missing} cell(s) of its suite never ran "
                         "(its pairs are compared on the seeds it has)")
    if not rows and not regressions:  # a gate that compared nothing must not pass
        raise ReportError(
            "nothing to compare: the runs share no (objective, estimator, S) with comparable "
            f"metrics (only in A: {_listing(only['A']) or 'none'}; only in B: "
            f"{_listing(only['B']) or 'none'})")
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return Comparison(Path(run_a), Path(run_b), thresholds, table, regressions, notes)
