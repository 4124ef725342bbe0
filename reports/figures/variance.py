"""The gradient-statistics figures of the standard report: variance, SNR and bias.

- `variance_over_training`: log10 total gradient variance against the training step;
- `variance_vs_samples`: total variance and SNR against the number of samples S, with the 1/S
  and sqrt(S) rates;
- `encoder_snr_vs_samples`: the inference network's gradient SNR against K (IWAE against DReG);
- `bias_variance`: squared bias against total variance, where the exact gradient is known.

Each takes the tidy frame and the palette and returns a Figure or raises `NoData`
(`estibench.reports.figures.axes`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, ScalarFormatter

from estibench.benchmarks.metrics.unbiasedness import ALPHA
from estibench.reports.aggregate import final_values, mean_se
from estibench.reports.figures.axes import (
    _GREY,
    NoData,
    _curves,
    _finals,
    _iso_lines,
    _legend,
    _log_axes,
    _ok,
    _one_sample_size,
    _pad_log_limits,
    _wrap,
    _wrapped_grid,
    _ylabel,
    left_out,
)
from estibench.reports.figures.palette import Palette
from estibench.reports.figures.style import look

WRT_ORDER = ("distribution", "encoder", "decoder")


def variance_over_training(frame: pd.DataFrame, palette: Palette) -> Figure:
    """log10 total gradient variance against training step, mean +/- SE over seeds; one panel
    per objective and parameter group that was measured (distribution, encoder)."""
    rows = _ok(frame)
    rows = rows[rows["metric"].str.fullmatch(r"grad/[a-z]+/log10_total_variance")]
    if rows.empty:
        raise NoData("no gradient variance was recorded (grad/*/log10_total_variance)")
    rows, note = _one_sample_size(rows)
    steps = sorted(rows["step"].unique())
    if len(steps) < 2:
        raise NoData(f"gradient variance was measured at one checkpoint only (step {steps[0]}); "
                     "a curve over training needs two or more")
    rows = rows.assign(wrt=rows["metric"].str.split("/").str[1])
    wrts = [w for w in WRT_ORDER if w in set(rows["wrt"])]
    measured = set(zip(rows["objective"], rows["wrt"], strict=True))
    panels = [(o, w) for o in sorted(rows["objective"].unique()) for w in wrts
              if (o, w) in measured]
    fig, axes = _wrapped_grid(len(panels), max(len(wrts), 1))
    drawn: list[str] = []
    for ax, (objective, wrt) in zip(axes, panels, strict=True):
        panel = rows[(rows["objective"] == objective) & (rows["wrt"] == wrt)]
        drawn += _curves(ax, panel, palette)
        ax.set_title(_wrap(f"{objective}: {wrt}"), fontsize="medium")
        ax.set_xlabel("training step")
        _ylabel(ax, "log10 total gradient variance")
    fig.suptitle(f"Gradient variance during training{note}")
    _legend(fig, palette, drawn)
    left_out(fig, [f"{o}: no {w} gradients were measured (a toy has no networks)"
                   for o in sorted(rows["objective"].unique()) for w in wrts
                   if (o, w) not in measured])
    return fig


def variance_vs_samples(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Total variance and SNR (distribution parameters, final checkpoint) against the number of
    samples S, log-log, with 1/S and sqrt(S) reference lines; one row per objective."""
    variance = "grad/distribution/total_variance"
    finals = _finals(frame, variance)
    sizes = sorted(finals["num_samples"].dropna().unique())
    if len(sizes) < 2:
        raise NoData(f"all cells use one number of samples (S = {int(sizes[0])}); this figure "
                     "needs a run with several num_samples, e.g. the toys suite")
    snr = next((m for m in ("grad/distribution/snr_norm", "grad/distribution/snr_mean")
                if m in finals.columns), None)
    columns = [(variance, "total gradient variance", "1/S", -1.0)]
    if snr is not None:
        columns.append((snr, "gradient SNR", "√S", 0.5))
    objectives = sorted(finals["objective"].unique())
    panels, omitted = [], []
    for objective in objectives:
        cells = finals[finals["objective"] == objective]
        for metric, label, reference, power in columns:
            # log axes: zero variance or infinite SNR (exact enumeration) cannot show
            values = cells[(cells[metric] > 0) & np.isfinite(cells[metric])]
            dropped = sorted(set(cells["estimator"].astype(str)) - set(values["estimator"]))
            if dropped:
                omitted.append(f"{objective}, {label}: {', '.join(dropped)} (zero or "
                               "non-finite values cannot be placed on log axes)")
            if not values.empty:
                panels.append((objective, values, metric, label, reference, power))
    if not panels:
        raise NoData("no cell has a positive finite gradient variance")
    fig, axes = _wrapped_grid(len(panels), len(columns))
    drawn: list[str] = []
    for ax, (objective, values, metric, label, reference, power) in zip(axes, panels,
                                                                         strict=True):
        anchors = []
        for estimator, group in values.groupby("estimator", sort=True):
            # geometric mean over seeds, band = +/- one SE of log10
            stats = mean_se(np.log10(group[metric]), group["num_samples"])
            s = stats.index.to_series().astype(float)
            colour, style = palette[str(estimator)], look(str(estimator))
            ax.plot(s, 10 ** stats["mean"], color=colour, marker=style.marker,
                    linestyle=style.linestyle, markersize=4)
            se = stats["se"].fillna(0.0)
            ax.fill_between(s, 10 ** (stats["mean"] - se), 10 ** (stats["mean"] + se),
                            color=colour, alpha=0.2, linewidth=0)
            anchors.append(stats["mean"].iloc[0] - power * np.log10(s.iloc[0]))
            drawn.append(str(estimator))
        if anchors:
            # half a decade below the lowest curve, so it hides none: only the slope matters
            s = np.array(sizes, dtype=float)
            ax.plot(s, 10 ** (min(anchors) - 0.5) * s**power, linestyle="--", color="black",
                    linewidth=1.0, label=f"∝ {reference}")
            ax.legend(loc="best", fontsize="small", frameon=False)
        _log_axes(ax)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xticks([float(s) for s in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("number of samples S")
        _ylabel(ax, f"{label}\n(distribution parameters)")
    fig.suptitle("Gradient variance and SNR against the number of samples")
    _legend(fig, palette, drawn)
    left_out(fig, omitted)
    return fig


def encoder_snr_vs_samples(frame: pd.DataFrame, palette: Palette) -> Figure:
    """SNR of the inference-network gradient (final checkpoint) against the number of samples K,
    log-log, one panel per objective measured at several K, with sqrt(K) and 1/sqrt(K) lines:
    the figure of Rainforth et al. (2018) and Tucker et al. (2019), where IWAE's encoder SNR
    falls as 1/sqrt(K) and DReG's grows as sqrt(K)."""
    metric = "grad/encoder/snr_norm"
    finals = _finals(frame, metric)
    finals = finals[finals[metric] > 0]
    # a curve needs one estimator at several K: the others (one S each) are left out
    sizes = finals.groupby(["objective", "estimator"])["num_samples"].transform("nunique")
    finals = finals[sizes >= 2]
    objectives = sorted(finals["objective"].unique())
    if not objectives:
        raise NoData("no objective has the encoder SNR at several numbers of samples; this "
                     "figure needs estimators run at several num_samples (the standard suite's "
                     "IWAE estimators)")
    fig, axes = _wrapped_grid(len(objectives))
    drawn: list[str] = []
    for ax, objective in zip(axes, objectives, strict=True):
        cells = finals[finals["objective"] == objective]
        for estimator, group in cells.groupby("estimator", sort=True):
            stats = mean_se(np.log10(group[metric]), group["num_samples"])
            k = stats.index.to_series().astype(float)
            colour = palette[str(estimator)]
            ax.plot(k, 10 ** stats["mean"], color=colour, marker="o", markersize=3.5)
            se = stats["se"].fillna(0.0)
            ax.fill_between(k, 10 ** (stats["mean"] - se), 10 ** (stats["mean"] + se),
                            color=colour, alpha=0.2, linewidth=0)
            drawn.append(str(estimator))
        sizes = np.array(sorted(cells["num_samples"].unique()), dtype=float)
        middle = 10 ** float(np.log10(cells[metric]).median())
        for power, style in ((0.5, "--"), (-0.5, ":")):
            ax.plot(sizes, middle * (sizes / sizes[0]) ** power, linestyle=style,
                    color="black", linewidth=1.0,
                    label="∝ √K" if power > 0 else "∝ 1/√K")
        ax.legend(loc="best", fontsize="small", frameon=False)
        _log_axes(ax)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xticks([float(k) for k in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("number of samples K")
        ax.set_ylabel("encoder gradient SNR")
    fig.suptitle(_wrap("Inference-network gradient SNR against the number of samples", 26))
    _legend(fig, palette, drawn)
    return fig


def bias_variance(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Squared bias against total variance (final checkpoint, one point per cell) with iso-MSE
    lines, for objectives with an exact gradient; one panel per objective and parameter group.

    No cell is dropped silently: a cell whose bias the unbiasedness test detects (p < ALPHA) is
    a filled marker at its debiased squared bias with a +/- SE bar; any other is a hollow marker
    at its noise floor tr(Var)/M, an upper reference for a bias the test could not see; a cell
    with zero variance (exact enumeration) cannot sit on log axes and is named in the panel."""
    finals = final_values(frame)
    panels, omitted = [], []
    for wrt in WRT_ORDER:
        bias, variance = f"grad/{wrt}/squared_bias", f"grad/{wrt}/total_variance"
        if bias not in finals.columns or variance not in finals.columns:
            continue
        cells = finals.dropna(subset=[bias, variance]).copy()
        if cells.empty:
            continue
        cells["_bias"], cells["_floor"] = cells[bias], _floor(cells, wrt)
        cells["_se"] = _metric(cells, f"grad/{wrt}/squared_bias_se")
        p = _metric(cells, f"grad/{wrt}/p_value")
        # runs without the test: a positive debiased bias is all they can say. A detected
        # bias whose debiased square is 0 has no height of its own: drawn at the floor.
        cells["_detected"] = np.where(p.notna(), p < ALPHA, True) & (cells[bias] > 0)
        cells["_variance"] = cells[variance]
        for objective in sorted(cells["objective"].unique()):
            panels.append((objective, wrt, cells[cells["objective"] == objective]))
    if not panels:
        raise NoData("no exact gradient is known for any objective (grad/*/squared_bias)")
    fig, axes = _wrapped_grid(len(panels))
    drawn: list[str] = []
    iso = None
    for ax, (objective, wrt, cells) in zip(axes, panels, strict=True):
        shown = cells[(cells["_variance"] > 0) & np.isfinite(cells["_variance"])]
        hidden = sorted(set(cells["estimator"]) - set(shown["estimator"]))
        ys = np.where(shown["_detected"], shown["_bias"], shown["_floor"])
        unplottable = sorted(set(shown["estimator"][~(ys > 0)]))  # no M recorded
        hidden += [e for e in unplottable if e not in hidden]
        positive = shown[ys > 0]
        ys = ys[ys > 0]
        for (estimator, detected), group in positive.groupby(["estimator", "_detected"]):
            colour = palette[str(estimator)]
            x = group["_variance"].to_numpy()
            marker = look(str(estimator)).marker
            if detected:
                ax.errorbar(x, group["_bias"], yerr=group["_se"].fillna(0.0).to_numpy(),
                            fmt=marker, color=colour, markersize=6, markeredgecolor="white",
                            markeredgewidth=0.5, elinewidth=1.0, capsize=2)
            else:
                ax.scatter(x, group["_floor"], s=36, marker=marker, facecolors="none",
                           edgecolors=[colour], linewidths=1.4)
            drawn.append(str(estimator))
        if hidden:  # named under the figure; in the panel only where it has nothing else
            omitted.append(f"{objective}: {wrt}: {', '.join(hidden)}: zero variance (exact "
                           "enumeration) or no noise floor: not on log axes")
            if not len(positive):
                ax.text(0.02, 0.02, _wrap("not on log axes (zero variance or floor): "
                                          + ", ".join(hidden), 40),
                        transform=ax.transAxes, fontsize="x-small", color=_GREY, va="bottom")
        if len(positive):
            _log_axes(ax)
            _pad_log_limits(ax, positive["_variance"].to_numpy(), ys)
            iso = _iso_lines(ax, "sum")
        else:  # only zero-variance cells (exact enumeration): named above, nothing to plot
            ax.set_axis_off()
        ax.set_title(_wrap(f"{objective}: {wrt}"), fontsize="medium")
        ax.set_xlabel("total gradient variance")
        _ylabel(ax, "squared bias ‖E[ĝ] − ∇‖², debiased (hollow: noise floor)")
    fig.suptitle("Bias² against variance (one point per cell)")
    markers = [
        Line2D([], [], marker="o", linestyle="", color=_GREY,
               label=f"bias detected\n(p < {ALPHA:g}), ± SE"),
        Line2D([], [], marker="o", linestyle="", color=_GREY, markerfacecolor="none",
               label="no bias detected:\nat the noise floor"),
    ]
    _legend(fig, palette, drawn, [*markers, *([iso] if iso is not None else [])])
    left_out(fig, omitted)
    return fig


def _metric(cells: pd.DataFrame, name: str) -> pd.Series:
    return cells[name] if name in cells.columns else pd.Series(np.nan, index=cells.index)


def _floor(cells: pd.DataFrame, wrt: str) -> pd.Series:
    """tr(Var)/M: recorded, else from the total variance and M."""
    floor = _metric(cells, f"grad/{wrt}/noise_floor")
    variance = cells[f"grad/{wrt}/total_variance"]
    return floor.fillna(variance / _metric(cells, f"grad/{wrt}/replicas"))
