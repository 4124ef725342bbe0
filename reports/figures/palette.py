"""One colour per estimator label, shared by every figure of every report
(`estibench.reports.figures.style`)."""

from __future__ import annotations

from collections.abc import Iterable

from estibench.reports.figures.style import Colour, look


class Palette(dict[str, Colour]):
    """Estimator label -> colour, and the labels of the estimators biased by design (legends
    mark them ‡, as the tables do)."""

    biased: frozenset[str] = frozenset()


def estimator_palette(labels: Iterable[str], biased: Iterable[str] = ()) -> Palette:
    """Map each estimator label to its fixed colour (a function of the label alone, so the same
    estimator has the same colour in every figure and every run); `biased`: the labels biased
    by design (`conventions.biased_estimators`)."""
    palette = Palette({name: look(name).colour for name in sorted({str(x) for x in labels})})
    palette.biased = frozenset(biased)
    return palette
