"""The console summary of a run: one row per (objective, estimator), means over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estibench.benchmarks.results.labels import display_estimators, display_objective
from estibench.benchmarks.results.store import CELL_CONFIG_KEYS, Store

# metric -> column: the best value over checkpoints for test/ metrics, the last for the rest.
SUMMARY_METRICS = {
    "test/elbo": "test ELBO",  # Monte Carlo, on held-out data (VAEs)
    "test/exact_objective": "exact objective",  # E_q[f] by enumeration or in closed form
    "grad/distribution/log10_total_variance": "log10 var",
    "time/time_per_estimate": "ms/estimate",
}


def cell_table(run_dir: str | Path) -> pd.DataFrame:
    """Cells with objective, estimator (as shown: `labels`), seed, status, reason columns."""
    with Store.open(run_dir, create=False) as store:
        cells = store.cells(CELL_CONFIG_KEYS)
    for column in ("seed", "num_samples"):
        cells[column] = [c.get(column) for c in cells["config"]]
    estimators = display_estimators(cells["config"])
    cells["objective"] = [display_objective(c) for c in cells["config"]]
    cells["estimator"] = [estimators.get(str(c.get("estimator")), c.get("estimator"))
                          for c in cells["config"]]
    return cells


def summary(run_dir: str | Path) -> pd.DataFrame:
    """Per (objective, estimator, S): the best held-out ELBO and exact objective, the final
    log-variance and the time per estimate (columns with no value in the run are left out)."""
    with Store.open(run_dir, create=False) as store:
        tidy, cells = store.tidy(), store.cells(CELL_CONFIG_KEYS)
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
        per_cell[column] = value
    if not per_cell:
        return pd.DataFrame()
    table = pd.DataFrame(per_cell)
    labels = tidy.drop_duplicates("key").set_index("key")[keys]
    configs = dict(zip(cells["key"], cells["config"], strict=True))
    estimators = display_estimators(configs.values())
    labels["objective"] = [display_objective(configs[key]) for key in labels.index]
    labels["estimator"] = [estimators.get(e, e) for e in labels["estimator"]]
    table = table.join(labels).groupby(keys, dropna=False).mean(numeric_only=True)
    return table.reset_index().rename(columns={"num_samples": "S"})
