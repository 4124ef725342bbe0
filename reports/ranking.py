"""Which estimator to use: estimators ranked by the mean squared error of their gradient at equal
cost, with the winner named only where it beats the runner-up beyond the noise.

    table = ranking(reports.load("runs/recommend-..."))
    answer(table)     # one sentence per objective and checkpoint: "use X" or "X and Y tie"

For one estimate of the gradient g_hat of an estimator, MSE = E ||g_hat - g||^2 = ||bias||^2 +
tr(Var): the squared bias (debiased, against the exact gradient or a reference) plus the total
variance. At equal cost: a budget of C evaluations of f per example buys C / c estimates of an
estimator that costs c, whose average has MSE(C) = ||bias||^2 + tr(Var) c / C (the variance
shrinks with averaging, the bias does not). C is the costliest estimator's c in the comparison,
so every estimator can afford at least one estimate; the ranking does not depend on C for
unbiased estimators. The same with seconds per estimate gives the MSE at equal time (measured
on this machine, so noisier and machine-dependent).

Intervals: the total variance's 95% interval (`GradientStats.total_variance_ci`), the squared
bias +/- 1.96 standard errors (clipped at 0), and MSE(C) from the ends of both. Over seeds the
values and the ends are averaged. The best is the lowest MSE(C); every estimator whose interval
reaches below the best's upper end ties with it. The gradient ranked is the encoder's (the
parameters a user trains) where the objective has one, else the distribution's parameters.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from estibench.benchmarks.metrics.unbiasedness import ALPHA, ROUNDING
from estibench.reports.aggregate import completed
from estibench.reports.bias import squared_bias_over_seeds

Z = 1.96
# The estimates' rounding: float32's eps, as the unbiasedness test allows (ROUNDING x eps x
# ||gradient||); MSEs closer than its square are equal (exact enumeration's "variance" is
# rounding noise of about 1e-17, not a worse estimator than 1e-20).
EPS = float(np.finfo(np.float32).eps)
RANKED_WRT = ("encoder", "distribution")
COLUMNS = (
    "objective", "step", "wrt", "rank", "estimator", "num_samples", "evaluations", "seconds",
    "variance", "variance_lo", "variance_hi", "squared_bias", "squared_bias_lo",
    "squared_bias_hi", "mse", "mse_evals", "mse_evals_lo", "mse_evals_hi", "mse_time",
    "mse_time_lo", "mse_time_hi", "budget_evals", "budget_seconds", "bias_against", "p_value",
    "verdict", "biased_by_design", "best", "seeds", "resolution", "own_trajectory",
)


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, step) with the metrics as columns."""
    rows = completed(frame)
    if rows.empty:
        return pd.DataFrame()
    keys = ["run", "cell_id", "objective", "estimator", "num_samples", "seed", "step"]
    keys += [c for c in ("bias_against", "bound", "protocol") if c in rows.columns]
    # groupby, not pivot_table(dropna=False), which builds every combination of the keys
    wide = rows.groupby(keys + ["metric"], sort=False, dropna=False)["value"].last().unstack(
        "metric")
    wide.columns.name = None
    return wide.reset_index()


def _per_cell(wide: pd.DataFrame, name: str) -> pd.Series:
    """A metric recorded once per cell (at its final step), broadcast to its rows."""
    if name not in wide.columns:
        return pd.Series(np.nan, index=wide.index)
    return wide.groupby(["run", "cell_id"])[name].transform("max")


def _wrt(wide: pd.DataFrame) -> str | None:
    for wrt in RANKED_WRT:
        column = f"grad/{wrt}/total_variance"
        if column in wide.columns and wide[column].notna().any():
            return wrt
    return None


def _column(wide: pd.DataFrame, name: str) -> pd.Series:
    return wide[name] if name in wide.columns else pd.Series(np.nan, index=wide.index)


def ranking(frame: pd.DataFrame, biased: set[str] | frozenset[str] = frozenset()) -> pd.DataFrame:
    """The ranked table (see the module): one row per (objective, checkpoint, estimator, S),
    sorted by objective, checkpoint and rank. `biased`: the labels of estimators biased by
    design (`conventions.biased_estimators`). Empty when no cell measured its gradient."""
    wide = _wide(frame)
    if wide.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    wide = wide.assign(evaluations=_per_cell(wide, "estimator/evaluations"),
                       seconds=_per_cell(wide, "time/time_per_estimate"))
    if "bound" in wide.columns:  # the IWAE-K bound is a different objective for every K
        iwae = wide["bound"] == "iwae"
        wide.loc[iwae, "objective"] = [f"{o} (K = {int(k)})" for o, k in
                                       zip(wide.loc[iwae, "objective"],
                                           wide.loc[iwae, "num_samples"], strict=True)]
    tables = []
    for objective, rows in wide.groupby("objective", sort=True):
        wrt = _wrt(rows)
        if wrt is None:
            continue
        measured = rows[rows[f"grad/{wrt}/total_variance"].notna()]
        tables.append(_rank_objective(str(objective), wrt, measured, biased))
    if not tables:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(tables, ignore_index=True)[list(COLUMNS)]


def _combined(group: pd.DataFrame, wrt: str) -> dict[str, object]:
    """One (estimator, S) at one checkpoint, its seeds combined."""
    n = len(group)

    def mean(name: str) -> float:
        return float(_column(group, f"grad/{wrt}/{name}").mean())

    p = _column(group, f"grad/{wrt}/p_value").dropna()
    bias = squared_bias_over_seeds(group, wrt)
    measured = math.isfinite(bias.estimate)
    against = "not measured"
    if measured:
        against = "exact"
        if "bias_against" in group.columns and group["bias_against"].notna().any():
            against = str(group["bias_against"].dropna().iloc[0])
            replicas = _column(group, f"grad/{wrt}/reference_replicas").dropna()
            if against != "exact" and len(replicas):
                against = f"{against}, M = {int(replicas.iloc[0])}"
    return {
        "variance": mean("total_variance"),
        "variance_lo": mean("total_variance_ci_lo"),
        "variance_hi": mean("total_variance_ci_hi"),
        "squared_bias": bias.estimate if measured else 0.0,
        "squared_bias_lo": bias.low if measured else 0.0,
        "squared_bias_hi": bias.high if measured else 0.0,
        "bias_against": against,
        "p_value": min(1.0, len(p) * float(p.min())) if len(p) else math.nan,
        "mean_norm": mean("mean_norm"),
        "evaluations": float(group["evaluations"].mean()),
        "seconds": float(group["seconds"].mean()),
        "seeds": n,
        # the independent protocol: each estimator measured on the model it trained itself
        "own_trajectory": bool((group["protocol"] == "independent").any())
        if "protocol" in group.columns else False,
    }


def _verdict(p_value: float, by_design: bool, measured: bool = False) -> str:
    if not math.isfinite(p_value):
        if measured:  # every replica the same value: no spread to test against
            return "not tested (every replica the same value)"
        return "biased by design (bias not measured)" if by_design else "bias not measured"
    if p_value < ALPHA:
        return f"biased (p = {p_value:.2g})"
    return ("biased by design, not detected here" if by_design
            else f"no bias detected (p = {p_value:.2g})")


def _rank_objective(objective: str, wrt: str, rows: pd.DataFrame,
                    biased: set[str] | frozenset[str]) -> pd.DataFrame:
    records = []
    for (step, estimator, num_samples), group in rows.groupby(
            ["step", "estimator", "num_samples"], sort=True):
        record = {"objective": objective, "step": int(step), "wrt": wrt,
                  "estimator": str(estimator), "num_samples": int(num_samples),
                  **_combined(group, wrt)}
        by_design = str(estimator) in biased
        record["biased_by_design"] = by_design
        record["verdict"] = _verdict(record["p_value"], by_design,  # type: ignore[arg-type]
                                     record["bias_against"] != "not measured")
        records.append(record)
    table = pd.DataFrame.from_records(records)
    out = []
    for _, at_step in table.groupby("step", sort=True):
        out.append(_rank_step(at_step.copy()))
    return pd.concat(out, ignore_index=True)


def _rank_step(table: pd.DataFrame) -> pd.DataFrame:
    """Equal-cost MSEs, ranks and the best (or the tied group) at one checkpoint: ties within
    the intervals, or within rounding (see EPS)."""
    table["mse"] = table["squared_bias"] + table["variance"]
    for cost, name in (("evaluations", "evals"), ("seconds", "time")):
        budget = float(table[cost].max()) if table[cost].notna().any() else math.nan
        share = table[cost] / budget
        table[f"budget_{'evals' if name == 'evals' else 'seconds'}"] = budget
        for suffix in ("", "_lo", "_hi"):
            table[f"mse_{name}{suffix}"] = (table[f"squared_bias{suffix}"]
                                            + table[f"variance{suffix}"] * share)
    table = table.sort_values(["mse_evals", "estimator", "num_samples"], kind="stable",
                              na_position="last").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    norm = float(table["mean_norm"].max()) if table["mean_norm"].notna().any() else 0.0
    resolution = (ROUNDING * EPS * norm) ** 2
    table["resolution"] = resolution
    best_hi = float(table["mse_evals_hi"].iloc[0])
    tied = table["mse_evals_lo"] <= best_hi + resolution
    tied.iloc[0] = True
    label = "best" if int(tied.sum()) == 1 else "tied for best"
    table["best"] = np.where(tied, label, "")
    return table


def estimator_text(row: pd.Series) -> str:
    """`reinforce-loo (S = 4)`: the estimator's label and its number of samples."""
    return f"{row['estimator']} (S = {int(row['num_samples'])})"


def answer(table: pd.DataFrame) -> list[str]:
    """One sentence per objective and checkpoint: the winner, or the tied group."""
    lines = []
    for (objective, step), rows in table.groupby(["objective", "step"], sort=True):
        best = rows[rows["best"] != ""]
        names = [estimator_text(r) for _, r in best.iterrows()]
        where = f"{objective}, step {int(step)}"
        budget = rows["budget_evals"].iloc[0]
        cost = (f" at equal cost ({budget:g} f evaluations per example)"
                if math.isfinite(budget) else "")
        if len(names) == 1:
            runner_up = rows.iloc[1] if len(rows) > 1 else None
            beyond = ("" if runner_up is None else
                      f", beyond the noise ahead of {estimator_text(runner_up)}")
            lines.append(f"{where}: use {names[0]}: the lowest gradient MSE{cost}{beyond}.")
        else:
            lines.append(f"{where}: {_joined(names)} tie for the lowest gradient MSE{cost}: "
                         "their intervals overlap; choose among them by what else matters "
                         "(time per step, bias).")
        if (rows["bias_against"] == "not measured").any():
            lines[-1] += (" The bias was not measured here (no exact gradient; [metrics] "
                          "reference = \"auto\" measures it against a reference): the MSE is "
                          "the variance alone, so biased estimators (‡) look better than they "
                          "are.")
    return lines


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def order_changes(table: pd.DataFrame) -> dict[str, bool]:
    """Per objective: whether the ranking differs between its checkpoints."""
    changes = {}
    for objective, rows in table.groupby("objective", sort=True):
        orders = {tuple(zip(g["estimator"], g["num_samples"], strict=True))
                  for _, g in rows.groupby("step", sort=True)}
        changes[str(objective)] = len(orders) > 1
    return changes




def _interval(value: float, low: float, high: float) -> str:
    from estibench.reports.tables import number

    if not math.isfinite(value):
        return "–"
    return f"{number(value)} [{number(low)}, {number(high)}]"


def display(rows: pd.DataFrame, compact: bool = False) -> Any:
    """The ranked table of one objective at one checkpoint, formatted (a `tables.Table`);
    compact: the columns a terminal has room for (the MSEs, the verdict, the costs)."""
    from estibench.reports.tables import Table, number

    budget, seconds = rows["budget_evals"].iloc[0], rows["budget_seconds"].iloc[0]
    if compact:
        return Table(
            ["rank", "estimator", "S", f"MSE at {number(budget)} f evals [95%]",
             f"MSE at {number(seconds * 1e3)} ms", "bias", "f evals", "ms", "best"],
            [[str(int(r["rank"])),
              str(r["estimator"]) + (" ‡" if r["biased_by_design"] else ""),
              str(int(r["num_samples"])),
              _interval(r["mse_evals"], r["mse_evals_lo"], r["mse_evals_hi"]),
              number(r["mse_time"]), str(r["verdict"]), number(r["evaluations"]),
              number(r["seconds"] * 1e3), str(r["best"])] for _, r in rows.iterrows()])
    columns = [
        "rank", "estimator", "S",
        f"MSE at {number(budget)} f evals/example [95%]",
        f"MSE at {number(seconds * 1e3)} ms [95%]",
        "variance (1 estimate) [95%]", "squared bias [95%]", "bias against", "bias verdict",
        "f evals per estimate", "ms per estimate", "best",
    ]
    out = []
    for _, r in rows.iterrows():
        out.append([
            str(int(r["rank"])), str(r["estimator"]) + (" ‡" if r["biased_by_design"] else ""),
            str(int(r["num_samples"])),
            _interval(r["mse_evals"], r["mse_evals_lo"], r["mse_evals_hi"]),
            _interval(r["mse_time"], r["mse_time_lo"], r["mse_time_hi"]),
            _interval(r["variance"], r["variance_lo"], r["variance_hi"]),
            _interval(r["squared_bias"], r["squared_bias_lo"], r["squared_bias_hi"]),
            str(r["bias_against"]), str(r["verdict"]), number(r["evaluations"]),
            number(r["seconds"] * 1e3), str(r["best"]),
        ])
    return Table(columns, out)


def sections(table: pd.DataFrame, compact: bool = False) -> list[tuple[str, str, Any]]:
    """(title, the answer, the ranked table) per objective: the table at its final checkpoint;
    the answer at the final checkpoint, then at every earlier one where it differs (compact:
    see `display`)."""
    out = []
    sentences = dict(zip([(o, s) for (o, s), _ in table.groupby(["objective", "step"])],
                         answer(table), strict=True))
    for objective, rows in table.groupby("objective", sort=True):
        steps = sorted(rows["step"].unique())
        final = steps[-1]
        best = {step: set(rows[(rows["step"] == step) & (rows["best"] != "")]["estimator"])
                for step in steps}
        text = sentences[(objective, final)]
        earlier = [sentences[(objective, step)] for step in steps[:-1]
                   if best[step] != best[final]]
        if earlier:
            text += " Earlier in training the answer differed: " + " ".join(earlier)
        own = bool(rows["own_trajectory"].any()) if "own_trajectory" in rows else False
        title = f"{objective} at step {int(final)}" + (
            " (each estimator trained its own model: compared at its own parameters)"
            if own else "")
        out.append((title, text, display(rows[rows["step"] == final], compact)))
    return out


__all__ = ["COLUMNS", "answer", "display", "estimator_text", "order_changes", "ranking",
           "sections"]
