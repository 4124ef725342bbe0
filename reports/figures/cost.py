"""The cost figures of the standard report: what a gradient estimate costs in time.

- `mse_against_cost`: the ranking's picture: the gradient's MSE against f evaluations per
  estimate, with lines of constant MSE x cost (equal MSE at equal cost);
- `efficiency`: total gradient variance against time per estimate, log-log, with lines of
  constant variance x time;
- `throughput`: gradient estimates per second per estimator, on the run's device.

Each takes the tidy frame and the palette and returns a Figure or raises `NoData`
(`estibench.reports.figures.axes`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from estibench.reports.aggregate import final_values
from estibench.reports.figures.axes import (
    NoData,
    _finals,
    _hatch_bars,
    _iso_lines,
    _legend,
    _log_axes,
    _one_sample_size,
    _pad_log_limits,
    _rotate,
    _scatter,
    _wrap,
    _wrapped_grid,
    _ylabel,
    left_out,
)
from estibench.reports.figures.palette import Palette


def _log_log_scatter(ax: Axes, xs: np.ndarray, ys: np.ndarray, estimators: pd.Series,
                     palette: Palette) -> list[str]:
    """One panel's points in each estimator's look on log axes padded to them; the estimators
    drawn (for the legend)."""
    _scatter(ax, xs, ys, estimators, palette)
    _log_axes(ax)
    _pad_log_limits(ax, xs, ys)
    return [str(e) for e in estimators.unique()]


def mse_against_cost(frame: pd.DataFrame, palette: Palette) -> Figure:
    """The MSE of one gradient estimate (squared bias + variance) against its f evaluations per
    example, log-log, every estimator and every S at each objective's final checkpoint, with
    dashed lines of constant MSE x cost: along one, estimators tie at equal cost (exactly for
    unbiased ones; a biased one's bias does not average away)."""
    from estibench.reports.ranking import ranking

    table = ranking(frame)
    if table.empty:
        raise NoData("no cell measured its gradient's variance")
    finals = table[table["step"] == table.groupby("objective")["step"].transform("max")]
    placed = finals[(finals["mse"] > finals["resolution"]) & (finals["evaluations"] > 0)]
    omitted = [f"{o}: {e} (S = {s}): MSE {m:.2g}, zero within rounding, cannot be placed on "
               "log axes (it ranks first in the table)"
               for o, e, s, m in finals.drop(index=placed.index)[
                   ["objective", "estimator", "num_samples", "mse"]].itertuples(index=False)]
    if placed.empty:
        raise NoData("every estimator has zero MSE (exact)")
    objectives = sorted(placed["objective"].unique())
    fig, axes = _wrapped_grid(len(objectives))
    drawn: list[str] = []
    iso = None
    for ax, objective in zip(axes, objectives, strict=True):
        rows = placed[placed["objective"] == objective]
        xs, ys = rows["evaluations"].to_numpy(float), rows["mse"].to_numpy(float)
        drawn += _log_log_scatter(ax, xs, ys, rows["estimator"], palette)
        sizes = sorted(int(s) for s in rows["num_samples"].unique())
        several = len(sizes) > 1  # one S in the panel: the title says it, not every point
        for x, y, s in zip(xs, ys, rows["num_samples"], strict=True) if several else ():
            note = ax.annotate(f"S={int(s)}", (x, y), textcoords="offset points",
                               xytext=(4, 3), fontsize="x-small", color="0.35")
            note.set_clip_on(True)  # a note at the panel's edge stays inside it
        low, high = ax.get_xlim()  # costs are often whole decades: keep their labels inside
        ax.set_xlim(low / 1.5, high * 1.5)
        iso = _iso_lines(ax, "product", "equal MSE at equal cost (decades)")
        same_s = "" if several else f", S = {sizes[0]}"
        ax.set_title(_wrap(f"{objective} (step {int(rows['step'].iloc[0])}, "
                           f"{rows['wrt'].iloc[0]}{same_s})"), fontsize="medium")
        ax.set_xlabel("f evaluations per estimate")
        _ylabel(ax, "gradient MSE of one estimate")
    fig.suptitle("MSE against cost (lower left is better)", x=0.02, ha="left")
    _legend(fig, palette, drawn, [iso] if iso is not None else [])
    left_out(fig, omitted)
    return fig


def efficiency(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Total gradient variance against time per estimate, log-log, with iso variance x time
    lines (the signal-per-second frontier); one panel per objective."""
    variance, seconds = "grad/distribution/total_variance", "time/time_per_estimate"
    measured = _finals(frame, variance, seconds)
    finals = measured[(measured[variance] > 0) & (measured[seconds] > 0)]
    dropped = measured.drop(index=finals.index)
    omitted = [f"{o}: {e}, {len(c)} cell(s): zero variance or time cannot be placed on log axes"
               for (o, e), c in dropped.groupby(["objective", "estimator"], sort=True)]
    if finals.empty:
        raise NoData("no cell has both a positive gradient variance and a time per estimate")
    objectives = sorted(finals["objective"].unique())
    fig, axes = _wrapped_grid(len(objectives))
    drawn: list[str] = []
    iso = None
    for ax, objective in zip(axes, objectives, strict=True):
        cells = finals[finals["objective"] == objective]
        xs, ys = cells[seconds].to_numpy(), cells[variance].to_numpy()
        drawn += _log_log_scatter(ax, xs, ys, cells["estimator"], palette)
        iso = _iso_lines(ax, "product")
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("time per gradient estimate (s)")
        _ylabel(ax, "total gradient variance")
    fig.suptitle("Variance against time (lower left is better)", x=0.02, ha="left")
    _legend(fig, palette, drawn, [iso] if iso is not None else [])
    left_out(fig, omitted)
    return fig


def throughput(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Gradient estimates per second per estimator, mean +/- SE over seeds; device in the
    title; one panel per objective."""
    finals = final_values(frame)
    if "time/estimates_per_second" in finals.columns:
        rate = finals["time/estimates_per_second"]
    elif "time/time_per_estimate" in finals.columns:
        rate = 1.0 / finals["time/time_per_estimate"]
    else:
        raise NoData("no throughput was measured (time/estimates_per_second or "
                     "time/time_per_estimate)")
    finals = finals.assign(rate=rate).dropna(subset=["rate"])
    finals = finals[np.isfinite(finals["rate"])]
    if finals.empty:
        raise NoData("no completed cell has a finite throughput")
    finals, note = _one_sample_size(finals)
    devices = ", ".join(sorted(str(d) for d in finals["device"].dropna().unique())) or "unknown"
    objectives = sorted(finals["objective"].unique())
    fig, axes = _wrapped_grid(len(objectives))
    drawn: list[str] = []
    for ax, objective in zip(axes, objectives, strict=True):
        cells = finals[finals["objective"] == objective]
        estimators = sorted(cells["estimator"].unique())
        sns.barplot(data=cells, x="estimator", y="rate", hue="estimator", order=estimators,
                    hue_order=estimators, palette=palette, errorbar="se", saturation=1.0,
                    legend=False, ax=ax)
        _hatch_bars(ax, estimators)
        drawn += estimators
        _rotate(ax)
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("")
        _ylabel(ax, "gradient estimates per second")
    fig.suptitle(f"Throughput on {devices}{note}")
    _legend(fig, palette, drawn)
    return fig
