"""Bias told from noise: per (objective, estimator[, S], parameter group), the debiased squared
bias with its standard error, the noise floor tr(Var)/M it was measured against, and the
verdict of the unbiasedness test.

The metrics come from `estibench.benchmarks.metrics.gradient_stats` at each cell's final checkpoint:
``squared_bias`` (||mean - exact||^2 - tr(Var)/M, clipped at 0), ``squared_bias_se``,
``noise_floor`` and ``p_value`` (the calibrated test), measured against the exact gradient or a
reference gradient (``against``: an unbiased estimator at many replicas, whose own error the
floor and the test include). Seeds are combined by `squared_bias_over_seeds` (each seed an
independent replicate of the whole measurement), the p-values by Bonferroni,
p = min(1, n min_i p_i), so that n seeds do not multiply the false alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from estibench.benchmarks.metrics.unbiasedness import ALPHA
from estibench.reports.aggregate import final_values, group_keys

WRTS = ("distribution", "encoder", "decoder")
COLUMNS = ("wrt", "seeds", "replicas_min", "replicas_max", "squared_bias", "squared_bias_se",
           "noise_floor", "p_value", "verdict", "against")


def replicas_text(low: float, high: float) -> str:
    """``128`` or ``128–4096``."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "?"
    return f"{int(low)}" if low == high else f"{int(low)}–{int(high)}"


def verdict(p_value: float, replicas: str) -> str:
    """"biased, p = ..." below ALPHA, "no bias detected at M = ..." otherwise."""
    if p_value is None or not math.isfinite(p_value):
        return "not tested (every replica the same value, or fewer than 3)"
    if p_value < ALPHA:
        return f"biased, p = {p_value:.2g}"
    return f"no bias detected at M = {replicas} (p = {p_value:.2g})"


def bias_summary(frame: pd.DataFrame, by_num_samples: bool | None = None) -> pd.DataFrame:
    """One row per group and parameter group with an exact gradient (see the module).

    Columns: the group keys, then COLUMNS. Empty when no cell measured a bias.
    """
    finals = final_values(frame)
    keys = group_keys(frame, by_num_samples) if not finals.empty else []
    rows = []
    for wrt in WRTS:
        metric = f"grad/{wrt}/squared_bias"
        if metric not in finals.columns:
            continue
        cells = finals.dropna(subset=[metric])
        for key, group in cells.groupby(keys, sort=True, dropna=False):
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,),
                                    strict=True)), **_combine(group, wrt)})
    out = pd.DataFrame(rows, columns=[*keys, *COLUMNS])
    order = out["wrt"].map({w: i for i, w in enumerate(WRTS)})
    return out.assign(_order=order).sort_values([*keys, "_order"], kind="stable").drop(
        columns="_order").reset_index(drop=True)


def _column(cells: pd.DataFrame, name: str) -> pd.Series:
    return cells[name] if name in cells.columns else pd.Series(np.nan, index=cells.index)


@dataclass(frozen=True)
class SquaredBias:
    """The squared bias of a group of seeds: `estimate` and its standard error `se`, with a
    95% interval [`low`, `high`] (NaN where no seed measured one)."""

    estimate: float
    se: float
    low: float
    high: float


def squared_bias_over_seeds(cells: pd.DataFrame, wrt: str) -> SquaredBias:
    """Combine the seeds' squared biases (one row per cell, its final metrics as columns).

    Each seed gives the unclipped debiased estimate ||mean - exact||^2 - noise floor (unbiased
    for the squared bias); they are averaged and the average clipped at 0 once (the average of
    values clipped one by one is above 0 for every unbiased estimator). The standard error is
    the larger of the cells' own, sqrt(sum se_i^2) / n, and the spread between seeds,
    sd / sqrt(n). The cells' own SE uses only the per-coordinate variances, so where the
    gradient's coordinates are correlated (a VAE's are) it is several times too small; the
    spread between seeds is not. The interval is estimate +/- t(n - 1) SE (1.96 SE for one
    seed), clipped at 0. Cells recorded without `bias_norm` fall back to their clipped
    `squared_bias`."""
    norm = _column(cells, f"grad/{wrt}/bias_norm")
    floor = _column(cells, f"grad/{wrt}/noise_floor").fillna(
        _column(cells, f"grad/{wrt}/total_variance") / _column(cells, f"grad/{wrt}/replicas"))
    raw = (norm**2 - floor).fillna(_column(cells, f"grad/{wrt}/squared_bias")).dropna()
    n = len(raw)
    if n == 0:
        return SquaredBias(math.nan, math.nan, math.nan, math.nan)
    own = _column(cells, f"grad/{wrt}/squared_bias_se")
    within = math.sqrt(float((own**2).sum())) / n if own.notna().any() else 0.0
    between = float(raw.std(ddof=1)) / math.sqrt(n) if n >= 2 else 0.0
    se = max(within, between)
    mean = float(raw.mean())
    q = float(stats.t.ppf(0.975, n - 1)) if n >= 2 else 1.96
    return SquaredBias(max(0.0, mean), se, max(0.0, mean - q * se), max(0.0, mean + q * se))


def _combine(cells: pd.DataFrame, wrt: str) -> dict:
    n = len(cells)
    replicas = _column(cells, f"grad/{wrt}/replicas")
    floor = _column(cells, f"grad/{wrt}/noise_floor")
    # runs before the noise floor was recorded: tr(Var) / M from what they have
    floor = floor.fillna(_column(cells, f"grad/{wrt}/total_variance") / replicas)
    bias = squared_bias_over_seeds(cells, wrt)
    p = _column(cells, f"grad/{wrt}/p_value").dropna()
    combined = min(1.0, len(p) * float(p.min())) if len(p) else math.nan
    low, high = float(replicas.min()), float(replicas.max())
    against = "exact"
    if "bias_against" in cells.columns and cells["bias_against"].notna().any():
        against = str(cells["bias_against"].dropna().iloc[0])
    reference_replicas = _column(cells, f"grad/{wrt}/reference_replicas").dropna()
    if against != "exact" and len(reference_replicas):
        against += f", M = {int(reference_replicas.iloc[0])}"
    return {
        "wrt": wrt,
        "seeds": n,
        "replicas_min": low,
        "replicas_max": high,
        "squared_bias": bias.estimate,
        "squared_bias_se": bias.se,
        "noise_floor": float(floor.mean()),
        "p_value": combined,
        "verdict": verdict(combined, replicas_text(low, high)),
        "against": against,
    }


__all__ = ["SquaredBias", "bias_summary", "replicas_text", "squared_bias_over_seeds", "verdict"]
