"""The console summary of a run: one row per (objective, estimator), means over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.store import Store

SUMMARY_METRICS = {
    "test/elbo": "best test ELBO",
    "test/exact_objective": "best exact objective",
    "grad/distribution/log10_total_variance": "log10 Var (final)",
    "time/time_per_estimate": "time/estimate (ms)",
}


def cell_table(run_dir: str | Path) -> pd.DataFrame:
    """Cells with objective, estimator, seed, status, reason columns."""
    with Store.open(run_dir, create=False) as store:
        cells = store.cells()
    for column in ("objective", "estimator", "seed", "num_samples"):
        cells[column] = [c.get(column) for c in cells["config"]]
    return cells


def summary(run_dir: str | Path) -> pd.DataFrame:
    """Per (objective, estimator, S): best bound, final log-variance, time per estimate."""
    with Store.open(run_dir, create=False) as store:
        tidy = store.tidy()
    if tidy.empty:
        return pd.DataFrame()
    tidy = tidy[tidy["status"] == "ok"]
    keys = ["objective", "estimator", "num_samples"]
    per_cell = []
    for metric, column in SUMMARY_METRICS.items():
        rows = tidy[tidy["metric"] == metric]
        if rows.empty:
            continue
        if metric.startswith("test/"):
            value = rows.groupby("key")["value"].max()
        else:
            value = rows.sort_values("step").groupby("key")["value"].last()
        if metric.startswith("time/"):
            value = value * 1e3
        per_cell.append(value.rename(column))
    if not per_cell:
        return pd.DataFrame()
    table = pd.concat(per_cell, axis=1)
    labels = tidy.drop_duplicates("key").set_index("key")[keys]
    table = table.join(labels).groupby(keys, dropna=False).mean(numeric_only=True)
    return table.reset_index()
