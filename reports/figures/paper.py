"""Figures in the style of the papers the shipped reproduction suites follow, one function each.

A function takes the tidy frame, the stored suite (a dict: the objectives' options say what k,
t or K a label stands for) and the palette, and returns a Figure or raises `NoData`. Which
figures a report draws depends on the suite's name (`PAPER_FIGURES`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from estibench.reports.aggregate import mean_se
from estibench.reports.figures.axes import (
    IMAGE_FORMATS,
    NoData,
    RenderedFigure,
    SkippedFigure,
    _band,
    _grid,
    _legend,
    _ok,
    _save,
    plain_log_labels,
    style,
)
from estibench.reports.figures.palette import Palette

Suite = dict[str, Any]


def _options(suite: Suite) -> dict[str, dict[str, Any]]:
    """objective label -> its options."""
    return {o.get("label") or o["name"]: o.get("options", {}) for o in suite["objectives"]}


def _metric(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = _ok(frame)
    rows = rows[rows["metric"] == metric]
    if rows.empty:
        raise NoData(f"no completed cell recorded {metric}")
    return rows


def mohamed2020(frame: pd.DataFrame, suite: Suite, palette: Palette) -> Figure:
    """Variance of the mean (top) and scale (bottom) gradient against k, per cost, log axes
    (Mohamed et al. 2020, figures 2 and 3); bars: the variance's 95% interval."""
    rows = _ok(frame)
    wide = rows[rows["step"] == 0].pivot_table(index=["objective", "estimator"],
                                               columns="metric", values="value")
    need = ["grad/distribution/total_variance", "grad/distribution/total_variance_ci_lo",
            "grad/distribution/total_variance_ci_hi"]
    if wide.empty or any(m not in wide.columns for m in need):
        raise NoData("no completed cell recorded the total variance at step 0")
    options = _options(suite)
    wide = wide[need].reset_index()
    wide["cost"] = [options[o].get("cost", "quadratic") for o in wide["objective"]]
    wide["k"] = [float(options[o].get("target", 0.0)) for o in wide["objective"]]
    wide["which"] = [options[o].get("parameters", "both") for o in wide["objective"]]
    costs = [c for c in ("quadratic", "exp", "cos") if c in set(wide["cost"])]
    fig, axes = _grid(2, len(costs))
    names = {"quadratic": "f = (x - k)²", "exp": "f = exp(-k x²)", "cos": "f = cos(k x)"}
    drawn = set()
    for column, cost in enumerate(costs):
        for row, which in enumerate(("mean", "scale")):
            ax = axes[row, column]
            part = wide[(wide["cost"] == cost) & (wide["which"] == which)]
            if part.empty:  # a cost or gradient the suite did not measure
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center",
                        va="center", color="0.45")
                continue
            for estimator, group in part.groupby("estimator", sort=True):
                g = group.sort_values("k")
                v = g[need[0]]
                err = np.vstack([v - g[need[1]], g[need[2]] - v])
                ax.errorbar(g["k"], v, yerr=err, color=palette[str(estimator)], marker="o",
                            markersize=3.5, linewidth=1.4, capsize=2)
                drawn.add(str(estimator))
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)
            if cost != "quadratic" and (part["k"] > 0).all():
                ax.set_xscale("log")
                plain_log_labels(ax.xaxis)
            ax.set_title(f"{names[cost]}: {'mean' if which == 'mean' else 'scale'}")
            ax.set_xlabel("k")
            ax.set_ylabel("variance of one estimate")
    _legend(fig, palette, sorted(drawn))
    return fig


def _curves(labels: list[str], rows_by_panel: tuple[tuple[pd.DataFrame, str], ...],
            palette: Palette) -> Figure:
    """One column per objective label, one row per (metric rows, y label): each estimator's
    mean ± SE over seeds against the step."""
    fig, axes = _grid(len(rows_by_panel), len(labels))
    drawn = set()
    for column, label in enumerate(labels):
        for row, (rows, name) in enumerate(rows_by_panel):
            ax = axes[row, column]
            for estimator, group in rows[rows["objective"] == label].groupby("estimator"):
                stats = mean_se(group["value"], group["step"])
                _band(ax, stats.index.to_series(), stats["mean"], stats["se"].fillna(0.0),
                      palette[str(estimator)], str(estimator))
                drawn.add(str(estimator))
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.set_ylabel(name)
    _legend(fig, palette, sorted(drawn))
    return fig


def relax_toy(frame: pd.DataFrame, suite: Suite, palette: Palette) -> Figure:
    """Per target t: the exact objective (top) and log10 gradient variance (bottom) against
    the step, mean ± SE over seeds (RELAX figure 1, ARM figure 1)."""
    objective = _metric(frame, "test/exact_objective")
    variance = _metric(frame, "grad/distribution/log10_total_variance")
    options = _options(suite)
    labels = sorted(objective["objective"].unique(),
                    key=lambda o: float(options.get(o, {}).get("target", 0.499)))
    return _curves(labels, ((objective, "exact objective -E[(b - t)²]"),
                            (variance, "log10 gradient variance")), palette)


def snr_against_k(frame: pd.DataFrame, suite: Suite, palette: Palette) -> Figure:
    """Encoder-gradient SNR against K, log-log, at the first and the last checkpoint, mean ± SE
    over seeds (Rainforth et al. 2018, figure 1); the dashed lines have slopes ±1/2."""
    rows = _metric(frame, "grad/encoder/snr_norm")
    first, last = rows["step"].min(), rows["step"].max()
    steps = [first] if first == last else [first, last]
    fig, axes = _grid(1, len(steps))
    drawn = set()
    for ax, step in zip(axes[0], steps, strict=True):
        at = rows[rows["step"] == step]
        for (objective, estimator), group in at.groupby(["objective", "estimator"]):
            stats = mean_se(group["value"], group["num_samples"])
            ks = stats.index.to_series().astype(float)
            _band(ax, ks, stats["mean"], stats["se"].fillna(0.0), palette[str(estimator)],
                  str(estimator))
            ax.annotate(str(objective), (ks.iloc[-1], stats["mean"].iloc[-1]), fontsize=7,
                        color="0.3")
            drawn.add(str(estimator))
        ks = np.array(sorted(at["num_samples"].unique()), dtype=float)
        if len(ks) > 1:
            middle = float(at["value"].median())
            for slope in (0.5, -0.5):
                ax.plot(ks, middle * (ks / math.sqrt(ks[0] * ks[-1])) ** slope, "--",
                        color="0.6", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_labels(ax.xaxis)
        plain_log_labels(ax.yaxis)
        ax.set_title(f"step {int(step)}")
        ax.set_xlabel("K (samples)")
        ax.set_ylabel("encoder gradient SNR")
    _legend(fig, palette, sorted(drawn))
    return fig


def jang2017(frame: pd.DataFrame, suite: Suite, palette: Palette) -> Figure:
    """Training ELBO estimate against step per objective (top) and the final test ELBO per
    estimator (bottom), mean ± SE over seeds (Jang et al. 2017, figure 3 and table 1)."""
    train = _metric(frame, "train/objective")
    test = _metric(frame, "test/elbo")
    labels = sorted(train["objective"].unique())
    fig, axes = _grid(2, len(labels))
    drawn = set()
    for column, label in enumerate(labels):
        ax = axes[0, column]
        for estimator, group in train[train["objective"] == label].groupby("estimator"):
            stats = mean_se(group["value"], group["step"])
            _band(ax, stats.index.to_series(), stats["mean"], stats["se"].fillna(0.0),
                  palette[str(estimator)], str(estimator))
            drawn.add(str(estimator))
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.set_ylabel("training ELBO estimate")
        ax = axes[1, column]
        final = test[test["objective"] == label]
        final = final[final["step"] == final.groupby("key")["step"].transform("max")]
        stats = final.groupby("estimator")["value"].agg(["mean", "sem"]).sort_values("mean")
        ax.barh(stats.index, stats["mean"], xerr=stats["sem"].fillna(0.0),
                color=[palette[str(e)] for e in stats.index])
        ax.set_xlim(stats["mean"].min() - 5, stats["mean"].max() + 2)
        ax.set_xlabel("final test ELBO (nats)")
    _legend(fig, palette, sorted(drawn))
    return fig


def sbn(frame: pd.DataFrame, suite: Suite, palette: Palette) -> Figure:
    """Per SBN: log10 encoder-gradient variance (top) and the training ELBO estimate (bottom)
    against the step, mean ± SE over seeds (DisARM figure 2, ARM figure 3)."""
    variance = _metric(frame, "grad/encoder/log10_total_variance")
    train = _metric(frame, "train/objective")
    labels = list(dict.fromkeys(o.get("label") or o["name"] for o in suite["objectives"]))
    labels = [label for label in labels if label in set(variance["objective"])]
    return _curves(labels, ((variance, "log10 encoder-gradient variance"),
                            (train, "training ELBO estimate")), palette)


@dataclass(frozen=True)
class PaperFigure:
    name: str
    title: str
    caption: str
    draw: Callable[[pd.DataFrame, Suite, Palette], Figure]


PAPER_FIGURES: dict[str, tuple[PaperFigure, ...]] = {
    "mohamed2020": (PaperFigure(
        "paper_mohamed2020", "Variance against k (Mohamed et al. 2020, figures 2-3)",
        "Variance of one gradient estimate with respect to the mean (top) and the scale "
        "(bottom) of N(1, 1), against k; bars: 95% intervals. The LOO baseline uses S = 2.",
        mohamed2020),),
    "relax-toy": (PaperFigure(
        "paper_relax_toy", "Bernoulli toy training (RELAX figure 1, ARM figure 1)",
        "Exact objective and log10 gradient variance against the step, per target t, mean ± SE "
        "over seeds. The optimum is -min(t, 1 - t)².", relax_toy),),
    "dreg-iwae": (PaperFigure(
        "paper_snr_against_k", "Encoder SNR against K (Rainforth et al. 2018, figure 1)",
        "Encoder-gradient SNR (||mean|| / sqrt(total variance)) against the number of "
        "samples K; dashed: slopes of ±1/2 (the sqrt(K) and 1/sqrt(K) rates).",
        snr_against_k),),
    "jang2017": (PaperFigure(
        "paper_jang2017", "Training curves and final test ELBO (Jang et al. 2017)",
        "Training ELBO estimate against the step and the final held-out ELBO per estimator, "
        "mean ± SE over seeds (mnist5k, not the paper's full MNIST).", jang2017),),
    "sbn": (PaperFigure(
        "paper_sbn", "Gradient variance over training (DisARM figure 2, ARM figure 3)",
        "log10 total variance of the encoder gradient and the training ELBO estimate against "
        "the step, per SBN, mean ± SE over seeds; every estimator at 2 evaluations per layer "
        "(mnist5k, not the papers' full MNIST).", sbn),),
}


def draw_paper_figures(
    frame: pd.DataFrame, suite: Suite | None, out_dir: Path, image_format: str,
    palette: Palette,
) -> tuple[list[RenderedFigure], list[SkippedFigure]]:
    """The paper figures of the run's suite (none for other suites), written like the
    standard ones; a figure that cannot be drawn is skipped with the reason."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r} is not supported")
    specs = PAPER_FIGURES.get(str((suite or {}).get("name")), ())
    rendered, skipped = [], []
    for spec in specs:
        for extension in IMAGE_FORMATS:
            (out_dir / f"{spec.name}.{extension}").unlink(missing_ok=True)
        try:
            with style():
                fig = spec.draw(frame, suite or {}, palette)
                path = out_dir / f"{spec.name}.{image_format}"
                embed, mime = _save(fig, path, image_format)
        except NoData as reason:
            skipped.append(SkippedFigure(spec.name, spec.title, str(reason)))
            continue
        except Exception as err:  # noqa: BLE001 - one bad figure never costs the report
            warnings.warn(f"figure {spec.name} failed: {err!r}", RuntimeWarning, stacklevel=2)
            skipped.append(SkippedFigure(spec.name, spec.title, f"error while drawing: {err}"))
            continue
        rendered.append(RenderedFigure(spec.name, spec.title, spec.caption, path, embed, mime))
    return rendered, skipped
