"""The console summary of a run: one row per (objective, estimator), means over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estibench.benchmarks.results.store import Store

# metric -> column; "bound" is the best held-out ELBO, or the exact objective for toys.
SUMMARY_METRICS = {
    "test/exact_objective": "bound",
    "test/elbo": "bound",
    "grad/distribution/log10_total_variance": "log10 var",
    "time/time_per_estimate": "ms/estimate",
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
    per_cell: dict[str, pd.Series] = {}
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
        # Later metrics win where present: test/elbo over the exact objective.
        per_cell[column] = value.combine_first(per_cell[column]) if column in per_cell else value
    if not per_cell:
        return pd.DataFrame()
    table = pd.DataFrame(per_cell)
    labels = tidy.drop_duplicates("key").set_index("key")[keys]
    table = table.join(labels).groupby(keys, dropna=False).mean(numeric_only=True)
    return table.reset_index().rename(columns={"num_samples": "S"})
