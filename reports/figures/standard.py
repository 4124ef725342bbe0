"""The standard figures of a report: the registry `FIGURES` and `draw_all`, which draws them.

Every figure function takes the tidy frame of :func:`estibench.reports.load` and the report's
estimator palette and returns a :class:`matplotlib.figure.Figure`, or raises :class:`NoData`
with the reason when the run holds nothing to draw. Figures are built with the object-oriented
API (no pyplot state), so they work under any backend, Agg included, and in threads. The
functions live by family: `variance` (gradient variance, SNR and bias), `bounds` (training
curves and bound tightness) and `cost` (time per estimate and throughput); the helpers they
share are in `axes`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from estibench.reports.aggregate import completed
from estibench.reports.figures.axes import (
    DPI,
    IMAGE_FORMATS,
    NoData,
    RenderedFigure,
    SkippedFigure,
    _save,
    style,
)
from estibench.reports.figures.bounds import tightness, training_curves
from estibench.reports.figures.cost import efficiency, mse_against_cost, throughput
from estibench.reports.figures.palette import Palette, estimator_palette
from estibench.reports.figures.variance import (
    bias_variance,
    encoder_snr_vs_samples,
    variance_over_training,
    variance_vs_samples,
)


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[pd.DataFrame, Palette], Figure]
    # Curves or bars at several S on one panel would be unreadable: a run with several S gets
    # one figure per S, so that every estimator and every S measured is shown.
    per_sample_size: bool = False


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("mse_vs_cost", "Which estimator: gradient MSE against cost",
               "Mean squared error of one gradient estimate (squared bias + total variance) "
               "against its f evaluations per example at each objective's final checkpoint, "
               "log-log, every estimator and S; the dashed lines have constant MSE x cost, so "
               "estimators on one line tie at equal cost (for unbiased ones; a bias does not "
               "average away). The ranking table above gives the intervals.",
               mse_against_cost),
    FigureSpec("variance_over_training", "Gradient variance during training",
               "log10 total gradient variance at each checkpoint, mean ± SE over seeds, per "
               "estimator.", variance_over_training, per_sample_size=True),
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
               "seeds.", training_curves, per_sample_size=True),
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
               "estimator, and the gap log p(x) − ELBO.", tightness, per_sample_size=True),
    FigureSpec("efficiency", "Variance against time",
               "Total gradient variance against time per estimate; along a dashed line "
               "variance × time is constant, so lower left is more signal per second. Zero "
               "variance (exact enumeration) cannot be shown on log axes.",
               efficiency),
    FigureSpec("throughput", "Throughput",
               "Gradient estimates per second per estimator on the run's device, mean ± SE over "
               "seeds.", throughput, per_sample_size=True),
)


def check_figure_options(image_format: str, dpi: int | None) -> None:
    """ValueError naming the option unless the figures can be written with them."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r} is not supported; "
                         f"choose one of {', '.join(IMAGE_FORMATS)}")
    if dpi is not None and not (isinstance(dpi, int) and 20 <= dpi <= 1200):
        raise ValueError(f"dpi must be an integer from 20 to 1200, got {dpi!r}")


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
    check_figure_options(image_format, dpi)
    out_dir.mkdir(parents=True, exist_ok=True)
    if palette is None:
        palette = estimator_palette(frame["estimator"].dropna())
    rendered, skipped = [], []
    if completed(frame).empty:
        reason = "no completed cells"
        return [], [SkippedFigure(s.name, s.title, reason) for s in FIGURES]
    sizes = sorted(int(s) for s in frame["num_samples"].dropna().unique())
    for spec in FIGURES:
        for name, title, rows in variants(spec, frame, sizes):
            try:
                with style():
                    fig = spec.draw(rows, palette)
                    if name != spec.name:
                        fig.suptitle(f"{fig.get_suptitle()} (S = {name.rsplit('_S', 1)[1]})")
                    path = out_dir / f"{name}.{image_format}"
                    embed, mime = _save(fig, path, image_format, dpi)
            except NoData as reason:
                skipped.append(SkippedFigure(name, title, str(reason)))
                continue
            except Exception as err:  # noqa: BLE001 - reported in the page, see docstring
                warnings.warn(f"figure {name} failed: {err!r}", RuntimeWarning, stacklevel=2)
                skipped.append(SkippedFigure(name, title, f"error while drawing: {err}"))
                continue
            notes = tuple(getattr(fig, "estibench_left_out", ()))
            rendered.append(RenderedFigure(name, title, spec.caption, path, embed, mime, notes))
    return rendered, skipped


def variants(spec: FigureSpec, frame: pd.DataFrame, sizes: list[int] | None = None
             ) -> list[tuple[str, str, pd.DataFrame]]:
    """(file name, title, rows) of each figure a spec draws from `frame`: one, or one per S."""
    if sizes is None:
        sizes = sorted(int(s) for s in frame["num_samples"].dropna().unique())
    if not spec.per_sample_size or len(sizes) <= 1:
        return [(spec.name, spec.title, frame)]
    return [(f"{spec.name}_S{s}", f"{spec.title} (S = {s})", frame[frame["num_samples"] == s])
            for s in sizes]
