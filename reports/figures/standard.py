"""The standard figures of a report, one function per figure.

Every function takes the tidy frame of :func:`estibench.reports.load` and the report's estimator
palette and
returns a :class:`matplotlib.figure.Figure`, or raises :class:`NoData` with the reason when the
run holds nothing to draw. Figures are built with the object-oriented API (no pyplot state), so
they work under any backend, Agg included, and in threads.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

from estibench.benchmarks.metrics.unbiasedness import ALPHA
from estibench.reports.aggregate import IWAE_PATTERN, completed, final_values, mean_se
from estibench.reports.figures.palette import Palette, estimator_palette
from estibench.reports.figures.style import look

IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
WRT_ORDER = ("distribution", "encoder", "decoder")
PANEL = (4.0, 3.0)  # inches per panel
MAX_COLUMNS = 3  # objectives wrap onto more rows beyond this
CHAR_HEIGHT = 0.075  # inches a character of a vertical tick label takes
DPI = 110  # the default; `write_report(dpi=...)`, `--dpi`
HATCHES = ("", "//", "\\\\", "xx", "..", "++", "--", "oo")  # bars in greyscale, by marker
_GREY = "0.4"


class NoData(Exception):
    """A figure has nothing to draw; the message says why (it goes into the report)."""


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The house style, scoped: global rcParams are left as they were. Text is plain text:
    labels are the user's, and a `$` in one would otherwise be parsed as mathtext."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85), \
            mpl.rc_context({"text.parse_math": False}):
        yield


def _wrap(text: str, width: int = 36) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def _grid(rows: int, columns: int, legend_width: float = 1.8) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with room on the right for a figure legend."""
    size = (PANEL[0] * columns + legend_width, PANEL[1] * rows + 0.6)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    return fig, axes


def _wrapped_grid(count: int, columns: int = MAX_COLUMNS) -> tuple[Figure, list[Axes]]:
    """``count`` panels, at most ``columns`` per row; unused panels are hidden."""
    columns = min(count, columns)
    rows = -(-count // columns)
    fig, axes = _grid(rows, columns)
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def hatch(label: str) -> str:
    """The bar hatch of an estimator (from its fixed marker), so bars survive greyscale."""
    from estibench.reports.figures.style import MARKERS

    marker = look(label).marker
    return HATCHES[MARKERS.index(marker) % len(HATCHES)] if marker in MARKERS else ""


def _hatch_bars(ax: Axes, order: Sequence[str]) -> None:
    """Hatch each bar of a categorical bar plot by the estimator at its x position."""
    for patch in ax.patches:
        index = int(round(patch.get_x() + patch.get_width() / 2))
        if 0 <= index < len(order):
            patch.set_hatch(hatch(order[index]))
            patch.set_edgecolor("white")


def left_out(fig: Figure, notes: Sequence[str]) -> None:
    """Record what a figure does not show and why (the report prints it under the caption)."""
    fig.estibench_left_out = list(notes)  # type: ignore[attr-defined]


def _legend(
    fig: Figure, palette: Palette, labels: Sequence[str], extra: Sequence[Line2D] = ()
) -> None:
    """One legend for the whole figure, outside the panels, estimators in palette order."""
    handles = [
        Line2D([], [], color=palette[label], marker=look(label).marker,
               linestyle=look(label).linestyle, linewidth=1.6, label=label)
        for label in sorted(set(labels))
    ]
    fig.legend(
        handles=[*handles, *extra], loc="outside right upper", title="estimator", frameon=False
    )


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    rows = completed(frame)
    return rows[np.isfinite(rows["value"])]


def _smallest_samples(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Keep the smallest number of samples S when a run has several (curves at different S on
    one panel would be unreadable); the returned note names it for the title."""
    sizes = sorted(frame["num_samples"].dropna().unique())
    if len(sizes) <= 1:
        return frame, ""
    smallest = sizes[0]
    others = ", ".join(str(int(s)) for s in sizes)
    return frame[frame["num_samples"] == smallest], f" (S = {int(smallest)} of {others})"


def _finals(frame: pd.DataFrame, *metrics: str) -> pd.DataFrame:
    """Final values of ok cells that have every one of ``metrics`` (finite)."""
    finals = final_values(frame)
    missing = [m for m in metrics if m not in finals.columns]
    if finals.empty or missing:
        raise NoData(f"no completed cell recorded {', '.join(missing or metrics)}")
    finals = finals.dropna(subset=list(metrics))
    finals = finals[np.isfinite(finals[list(metrics)]).all(axis=1)]
    if finals.empty:
        raise NoData(f"no completed cell has finite values of {', '.join(metrics)}")
    return finals


def _band(ax: Axes, x: pd.Series, mean: pd.Series, se: pd.Series, colour: tuple,
          label: str) -> None:
    """Mean line with a +/- one standard error band (no band for a single seed)."""
    style = look(label)
    ax.plot(x, mean, color=colour, marker=style.marker, linestyle=style.linestyle,
            markersize=4, linewidth=1.6)
    ax.fill_between(x, mean - se, mean + se, color=colour, alpha=0.2, linewidth=0)


def _curves(ax: Axes, rows: pd.DataFrame, palette: Palette) -> list[str]:
    """One mean +/- SE curve over seeds per estimator, against step; returns the estimators."""
    drawn = []
    for estimator, group in rows.groupby("estimator", sort=True):
        stats = mean_se(group["value"], group["step"])
        _band(ax, stats.index.to_series(), stats["mean"], stats["se"].fillna(0.0),
              palette[str(estimator)], str(estimator))
        drawn.append(str(estimator))
    return drawn


def _scatter(ax: Axes, xs: np.ndarray, ys: np.ndarray, labels: pd.Series,
             palette: Palette) -> None:
    """One point per cell, coloured and shaped by its estimator."""
    labels = labels.astype(str).to_numpy()
    markers = {label: look(label).marker for label in set(labels)}
    sns.scatterplot(x=xs, y=ys, hue=labels, style=labels, markers=markers, palette=palette,
                    ax=ax, legend=False, s=40, edgecolor="white", linewidth=0.5)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade(value: float, _position: int = 0) -> str:
    """10^k as plain text (10⁻³): figures parse no mathtext (`style`), and matplotlib's own
    log labels are mathtext."""
    if not value > 0:
        return ""
    k = math.log10(value)
    return f"10{str(round(k)).translate(_SUPERSCRIPT)}" if abs(k - round(k)) < 1e-9 else ""


def plain_log_labels(axis: Axis) -> None:
    """Label a log axis at (at most 5) decades in plain text: minor labels and crowded decades
    overlap on narrow panels."""
    axis.set_major_locator(LogLocator(base=10, numticks=5))
    axis.set_major_formatter(FuncFormatter(decade))
    axis.set_minor_formatter(NullFormatter())


def _log_axes(ax: Axes) -> None:
    """Log-log axes, labelled by `plain_log_labels`."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_labels(ax.xaxis)
    plain_log_labels(ax.yaxis)


def _rotate(ax: Axes) -> None:
    """Vertical category labels (estimator names are long: tilted ones still overlap as boxes),
    with the figure made tall enough for the longest of them."""
    labels = ax.get_xticklabels()
    for label in labels:
        label.set_rotation(90)
        label.set_horizontalalignment("center")
    longest = max((len(label.get_text()) for label in labels), default=0)
    rows = ax.get_subplotspec().get_gridspec().nrows
    needed = rows * (PANEL[1] + CHAR_HEIGHT * longest) + 0.6
    if ax.figure.get_figheight() < needed:
        ax.figure.set_figheight(needed)


def _ylabel(ax: Axes, text: str) -> None:
    """A y label wrapped to the panel's height (a long one would run past the panel)."""
    ax.set_ylabel(_wrap(text, 26))


def _iso_lines(ax: Axes, kind: str) -> Line2D:
    """Dashed lines of constant x + y (``kind="sum"``) or x * y (``"product"``), one per
    decade, drawn within the current (log) limits; returns a legend handle."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    if kind == "sum":
        low, high = np.log10(min(x0, y0)), np.log10(x1 + y1)
    else:
        low, high = np.log10(x0 * y0), np.log10(x1 * y1)
    levels = 10.0 ** np.arange(np.floor(low), np.ceil(high) + 1)
    # x + y = c is an L on log-log axes: sample the split fraction log-uniformly so both the
    # flat and the steep part are drawn smoothly.
    fraction = np.logspace(-12, np.log10(0.5), 300)
    for level in levels:
        if kind == "sum":
            xs = level * np.concatenate([fraction, (1 - fraction)[::-1]])
            ys = level - xs
        else:
            xs = np.logspace(np.log10(x0), np.log10(x1), 50)
            ys = level / xs
        ax.plot(xs, ys, linestyle="--", color=_GREY, linewidth=0.9, zorder=0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    label = "iso-MSE: bias² + Var = const" if kind == "sum" else "iso Var × time (decades)"
    return Line2D([], [], linestyle="--", color=_GREY, linewidth=0.9, label=label)


def _pad_log_limits(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> None:
    """Log-axis limits with half a decade of margin and at least two decades in view, so every
    axis carries two or more labelled decades."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        low, high = np.log10(values.min()) - 0.5, np.log10(values.max()) + 0.5
        widen = max(0.0, 2.0 - (high - low)) / 2
        setter(10 ** (low - widen), 10 ** (high + widen))


# --------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------


def variance_over_training(frame: pd.DataFrame, palette: Palette) -> Figure:
    """log10 total gradient variance against training step, mean +/- SE over seeds; one panel
    per objective and parameter group that was measured (distribution, encoder)."""
    rows = _ok(frame)
    rows = rows[rows["metric"].str.fullmatch(r"grad/[a-z]+/log10_total_variance")]
    if rows.empty:
        raise NoData("no gradient variance was recorded (grad/*/log10_total_variance)")
    rows, note = _smallest_samples(rows)
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


def training_curves(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Training objective and the test IWAE bound (largest k) against step with seed bands; one
    panel per objective and quantity that was recorded."""
    rows = _ok(frame)
    rows, note = _smallest_samples(rows)
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
        if hidden:
            omitted.append(f"{objective}: {wrt}: {', '.join(hidden)}: zero variance (exact "
                           "enumeration) or no noise floor: not on log axes")
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


def tightness(frame: pd.DataFrame, palette: Palette) -> Figure:
    """Final test ELBO, IWAE-k and log p(x) per estimator (left) and the gap log p(x) - ELBO
    (right), mean +/- SE over seeds; one row per objective."""
    finals = _finals(frame, "test/elbo")
    finals, note = _smallest_samples(finals)
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
        _scatter(ax, xs, ys, cells["estimator"], palette)
        drawn += [str(e) for e in cells["estimator"].unique()]
        _log_axes(ax)
        _pad_log_limits(ax, xs, ys)
        iso = _iso_lines(ax, "product")
        ax.set_title(_wrap(objective), fontsize="medium")
        ax.set_xlabel("time per gradient estimate (s)")
        _ylabel(ax, "total gradient variance")
    fig.suptitle("Variance against cost (lower left is better)")
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
    finals, note = _smallest_samples(finals)
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


# --------------------------------------------------------------------------------------------
# Drawing them all
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[pd.DataFrame, Palette], Figure]


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("variance_over_training", "Gradient variance during training",
               "log10 total gradient variance at each checkpoint, mean ± SE over seeds, per "
               "estimator (as in the REBAR and DisARM papers).", variance_over_training),
    FigureSpec("variance_vs_samples", "Variance and SNR against the number of samples",
               "Final-checkpoint total variance and SNR against S, log-log; the dashed lines "
               "show the 1/S (variance) and √S (SNR) rates of independent samples.",
               variance_vs_samples),
    FigureSpec("encoder_snr_vs_samples", "Encoder SNR against the number of samples",
               "Final-checkpoint SNR (norm of the mean over the root total variance) of the "
               "inference-network gradient against K, log-log; dashed √K and dotted 1/√K lines. "
               "IWAE's encoder SNR falls with K, DReG's does not (Rainforth et al. 2018, Tucker "
               "et al. 2019).", encoder_snr_vs_samples),
    FigureSpec("training_curves", "Training curves",
               "Training objective estimate and test IWAE bound against step, mean ± SE over "
               "seeds.", training_curves),
    FigureSpec("bias_variance", "Bias² against variance",
               "Squared bias against total variance where the exact gradient is known; dashed "
               "lines have equal MSE = bias² + Var. Filled markers: the unbiasedness test "
               "detects a bias (p < 0.01); the point is the squared bias with the Monte Carlo "
               "error of the mean (the noise floor tr(Var)/M) removed, ± its standard error. "
               "Hollow markers: no bias detected at that cell's M; the point sits at the noise "
               "floor, the size of ‖mean − exact‖² that noise alone produces, not at a measured "
               "bias. Cells with zero variance (exact enumeration) are named in their panel.",
               bias_variance),
    FigureSpec("tightness", "Bound tightness",
               "Final ELBO, IWAE-k and log p(x) (exact, or a high-k IWAE reference) per "
               "estimator, and the gap log p(x) − ELBO.", tightness),
    FigureSpec("efficiency", "Variance against time",
               "Total gradient variance against time per estimate; along a dashed line "
               "variance × time is constant, so lower left is more signal per second. Zero "
               "variance (exact enumeration) cannot be shown on log axes.",
               efficiency),
    FigureSpec("throughput", "Throughput",
               "Gradient estimates per second per estimator on the run's device, mean ± SE over "
               "seeds.", throughput),
)


@dataclass(frozen=True)
class RenderedFigure:
    """A figure written to ``path``; ``embed`` is an image for the HTML (PNG for PDF files)."""

    name: str
    title: str
    caption: str
    path: Path
    embed: bytes
    embed_mime: str
    left_out: tuple[str, ...] = ()  # what the figure does not show, and why


@dataclass(frozen=True)
class SkippedFigure:
    name: str
    title: str
    reason: str


def _save(fig: Figure, path: Path, image_format: str, dpi: int = DPI) -> tuple[bytes, str]:
    # No bbox_inches="tight": constrained layout already keeps every label and the outside
    # legend inside the canvas, and a tight bbox would cost a second draw.
    fig.savefig(path, format=image_format, dpi=dpi)
    if image_format != "png":  # the HTML embeds PNGs (PDF does not show in <img>)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue(), MIME["png"]
    return path.read_bytes(), MIME[image_format]


def draw_all(
    frame: pd.DataFrame,
    out_dir: Path,
    image_format: str = "png",
    palette: Palette | None = None,
    dpi: int = DPI,
) -> tuple[list[RenderedFigure], list[SkippedFigure]]:
    """Draw every standard figure into ``out_dir/{name}.{format}``.

    Returns the figures written and those skipped with the reason. A figure that fails while
    drawing is skipped with the error as its reason (and a warning), so one bad figure never
    costs the whole report.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r} is not supported; "
                         f"choose one of {', '.join(IMAGE_FORMATS)}")
    if not (isinstance(dpi, int) and 20 <= dpi <= 1200):
        raise ValueError(f"dpi must be an integer from 20 to 1200, got {dpi!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if palette is None:
        palette = estimator_palette(frame["estimator"].dropna())
    rendered, skipped = [], []
    if completed(frame).empty:
        reason = "no completed cells"
        return [], [SkippedFigure(s.name, s.title, reason) for s in FIGURES]
    for spec in FIGURES:
        try:
            with style():
                fig = spec.draw(frame, palette)
                path = out_dir / f"{spec.name}.{image_format}"
                embed, mime = _save(fig, path, image_format, dpi)
        except NoData as reason:
            skipped.append(SkippedFigure(spec.name, spec.title, str(reason)))
            continue
        except Exception as err:  # noqa: BLE001 - reported in the page, see docstring
            warnings.warn(f"figure {spec.name} failed: {err!r}", RuntimeWarning, stacklevel=2)
            skipped.append(SkippedFigure(spec.name, spec.title, f"error while drawing: {err}"))
            continue
        notes = tuple(getattr(fig, "estibench_left_out", ()))
        rendered.append(RenderedFigure(spec.name, spec.title, spec.caption, path, embed, mime,
                                       notes))
    return rendered, skipped
