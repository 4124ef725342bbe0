"""The objective's figures of the standard report: training curves and bound tightness.

- `training_curves`: the training objective estimate and the test IWAE bound (largest k)
  against the training step;
- `tightness`: the final held-out ELBO, IWAE-k and log p(x) per estimator, and the gap
  log p(x) - ELBO.

Each takes the tidy frame and the palette and returns a Figure or raises `NoData`
(`estibench.reports.figures.axes`).
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from estibench.reports.aggregate import IWAE_PATTERN
from estibench.reports.figures.axes import (
    NoData,
    _curves,
    _finals,
    _hatch_bars,
    _legend,
    _ok,
    _one_sample_size,
    _rotate,
    _wrap,
    _wrapped_grid,
    _ylabel,
    left_out,
)
from estibench.reports.figures.palette import Palette
from estibench.reports.figures.style import look


def training_curves(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Training objective and the test IWAE bound (largest k) against step with seed bands; one
    panel per objective and quantity that was recorded."""
    rows = _ok(frame)
    rows, note = _one_sample_size(rows)
    ks = sorted(int(m.group(1)) for name in rows["metric"].unique()
                if (m := IWAE_PATTERN.match(name)))
    columns = [("train/objective", "training objective estimate")]
    if ks:
        columns.append((f"test/iwae_{ks[-1]}", f"test IWAE-{ks[-1]} (nats)"))
    rows = rows[rows["metric"].isin([m for m, _ in columns])]
    if rows.empty or rows["step"].nunique() < 2:
        raise NoData("no training curve was recorded (train/objective or test/iwae_k at two or "
                     "more steps)")
    objectives = sorted(rows["objective"].unique())
    measured = set(zip(rows["objective"], rows["metric"], strict=True))
    panels = [(o, m, label) for o in objectives for m, label in columns if (o, m) in measured]
    fig, axes = _wrapped_grid(len(panels), len(columns))
    drawn: list[str] = []
    for ax, (objective, metric, label) in zip(axes, panels, strict=True):
        panel = rows[(rows["objective"] == objective) & (rows["metric"] == metric)]
        drawn += _curves(ax, panel, palette)
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("training step")
        _ylabel(ax, label)
    fig.suptitle(f"Training curves, mean ± SE over seeds{note}")
    _legend(fig, palette, drawn)
    left_out(fig, [f"{o}: no {label} was recorded (toys have no held-out data; or "
                   "metrics.bounds is off)" for o in objectives for m, label in columns
                   if (o, m) not in measured])
    return fig


def tightness(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Final test ELBO, IWAE-k and log p(x) per estimator (left) and the gap log p(x) - ELBO
    (right), mean +/- SE over seeds; one row per objective."""
    finals = _finals(frame, "test/elbo")
    finals, note = _one_sample_size(finals)
    ks = sorted(int(m.group(1)) for c in finals.columns if (m := IWAE_PATTERN.match(str(c))))
    objectives = sorted(finals["objective"].unique())
    has_gap = {o: "test/gap" in finals.columns and bool(
        finals.loc[finals["objective"] == o, "test/gap"].notna().any()) for o in objectives}
    columns = 2 if any(has_gap.values()) else 1
    fig, flat = _wrapped_grid(sum(1 + has_gap[o] for o in objectives), columns)
    panels = iter(flat)
    drawn: list[str] = []
    for objective in objectives:
        cells = finals[finals["objective"] == objective]
        exact = "test/log_marginal_exact" in cells.columns and bool(
            (cells["test/log_marginal_exact"] == 1).all()
        )
        truth = "log p(x) exact" if exact else "log p(x) reference"
        bounds = [("test/elbo", "ELBO"), *((f"test/iwae_{k}", f"IWAE-{k}") for k in ks),
                  ("test/log_marginal", truth)]
        long = pd.concat(
            [pd.DataFrame({"estimator": cells["estimator"], "bound": name, "value": cells[m]})
             for m, name in bounds if m in cells.columns],
            ignore_index=True,
        ).dropna()
        order = [name for m, name in bounds if name in set(long["bound"])]
        estimators = sorted(long["estimator"].unique())
        ax = next(panels)
        sns.pointplot(data=long, x="bound", y="value", hue="estimator", order=order,
                      hue_order=estimators, palette=palette, errorbar="se",
                      dodge=0.4 if len(estimators) > 1 else False,  # seaborn divides by n - 1
                      markers=[look(e).marker for e in estimators],
                      linestyles=[look(e).linestyle for e in estimators],
                      markersize=4, linewidth=1.2, legend=False, ax=ax)
        drawn += estimators
        ax.set_title(_wrap(f"{objective}: bounds"), fontsize="medium")
        ax.set_xlabel("")
        _ylabel(ax, "nats per example")
        _rotate(ax)
        if has_gap[objective]:
            ax = next(panels)
            ax.set_title(_wrap(f"{objective}: gap"), fontsize="medium")
            gaps = cells.dropna(subset=["test/gap"])
            sns.barplot(data=gaps, x="estimator", y="test/gap", hue="estimator",
                        order=estimators, hue_order=estimators, palette=palette,
                        errorbar="se", saturation=1.0, legend=False, ax=ax)
            _hatch_bars(ax, estimators)
            _rotate(ax)
            ax.set_xlabel("")
            _ylabel(ax, f"{truth} − ELBO (nats)")
    fig.suptitle(f"Bound tightness on held-out data{note}")
    _legend(fig, palette, drawn)
    left_out(fig, [f"{o}: no gap (log p(x) was not measured)" for o in objectives
                   if not has_gap[o]])
    return fig
