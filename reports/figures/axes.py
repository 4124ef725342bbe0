"""The plumbing every figure of a report shares, standard and paper figures alike.

`NoData` (a figure with nothing to draw, and why), the house `style`, and the sizes and formats
(`PANEL`, `DPI`, `IMAGE_FORMATS`); the rows a figure reads (`_ok`, `_finals`,
`_one_sample_size`); panel grids and labels (`_grid`, `_wrapped_grid`, `_rotate`, `_ylabel`);
the marks (mean +/- SE bands and curves, scatter points, hatched bars); log axes labelled in plain
text (`decade`, `plain_log_labels`, `_log_axes`, `_pad_log_limits`) and their iso lines; the
figure legend outside the panels and the notes of what a figure leaves out (`_legend`,
`left_out`); and the records of a drawn or skipped figure (`RenderedFigure`, `SkippedFigure`)
with `_save`, which writes a figure and the PNG the HTML embeds.
"""

from __future__ import annotations

import contextlib
import io
import math
import textwrap
from collections.abc import Iterator, Sequence
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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from estibench.reports.aggregate import completed, final_values, mean_se
from estibench.reports.figures.palette import Palette
from estibench.reports.figures.style import look

IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
PANEL = (4.0, 3.0)  # inches per panel
MAX_COLUMNS = 3  # objectives wrap onto more rows beyond this
CHAR_HEIGHT = 0.075  # inches a character of a vertical tick label takes
DPI = 110  # the default; `write_report(dpi=...)`, `--dpi`
HATCHES = ("", "//", "\\\\", "xx", "..", "++", "--", "oo")  # bars in greyscale, by marker
_GREY = "0.4"


class NoData(Exception):
    """A figure has nothing to draw; the message says why (it goes into the report)."""


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The house style, scoped: global rcParams are left as they were. Text is plain text:
    labels are the user's, and a `$` in one would otherwise be parsed as mathtext."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85), \
            mpl.rc_context({"text.parse_math": False}):
        yield


# --------------------------------------------------------------------------------------------
# The rows a figure reads
# --------------------------------------------------------------------------------------------


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    rows = completed(frame)
    return rows[np.isfinite(rows["value"])]


def _one_sample_size(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of a figure drawn for one S (curves at several S on one panel would be
    unreadable: `standard.draw_all` draws one figure per S); rows at several S are an error,
    never silently cut to one."""
    sizes = sorted(frame["num_samples"].dropna().unique())
    if len(sizes) > 1:
        raise ValueError(f"this figure shows one number of samples S, got S = "
                         f"{', '.join(str(int(s)) for s in sizes)}: draw one figure per S")
    return frame, ""


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


# --------------------------------------------------------------------------------------------
# Panels and labels
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Marks
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Log axes
# --------------------------------------------------------------------------------------------


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


def _pad_log_limits(ax: Axes, xs: np.ndarray, ys: np.ndarray) -> None:
    """Log-axis limits with half a decade of margin and at least two decades in view, so every
    axis carries two or more labelled decades."""
    for values, setter in ((xs, ax.set_xlim), (ys, ax.set_ylim)):
        low, high = np.log10(values.min()) - 0.5, np.log10(values.max()) + 0.5
        widen = max(0.0, 2.0 - (high - low)) / 2
        setter(10 ** (low - widen), 10 ** (high + widen))


def _iso_lines(ax: Axes, kind: str, label: str | None = None) -> Line2D:
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
    if label is None:
        label = ("iso-MSE: bias² + Var = const" if kind == "sum"
                 else "iso Var × time (decades)")
    return Line2D([], [], linestyle="--", color=_GREY, linewidth=0.9, label=label)


# --------------------------------------------------------------------------------------------
# Legend and notes
# --------------------------------------------------------------------------------------------


def _legend(
    fig: Figure, palette: Palette, labels: Sequence[str], extra: Sequence[Line2D] = ()
) -> None:
    """One legend for the whole figure, outside the panels, estimators in palette order; those
    biased by design marked ‡."""
    biased: frozenset[str] = getattr(palette, "biased", frozenset())
    handles = [
        Line2D([], [], color=palette[label], marker=look(label).marker,
               linestyle=look(label).linestyle, linewidth=1.6,
               label=f"{label} ‡" if label in biased else label)
        for label in sorted(set(labels))
    ]
    fig.legend(
        handles=[*handles, *extra], loc="outside right upper", title="estimator", frameon=False
    )


def left_out(fig: Figure, notes: Sequence[str]) -> None:
    """Record what a figure does not show and why (the report prints it under the caption)."""
    fig.estibench_left_out = list(notes)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Drawn and skipped figures
# --------------------------------------------------------------------------------------------


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
