"""One colour per estimator label, shared by every figure of every report
(`estibench.reports.figures.style`)."""

from __future__ import annotations

from collections.abc import Iterable

from estibench.reports.figures.style import Colour, look

Palette = dict[str, Colour]


def estimator_palette(labels: Iterable[str]) -> Palette:
    """Map each estimator label to its fixed colour (a function of the label alone, so the same
    estimator has the same colour in every figure and every run)."""
    return {name: look(name).colour for name in sorted({str(label) for label in labels})}
