"""One colour per estimator label, shared by every figure of a report."""

from __future__ import annotations

from collections.abc import Iterable

import seaborn as sns

Colour = tuple[float, float, float]
Palette = dict[str, Colour]

# "colorblind" has 10 distinguishable colours; beyond that husl spaces hues evenly.
_QUALITATIVE_LIMIT = 10


def estimator_palette(labels: Iterable[str]) -> Palette:
    """Map each estimator label to a colour, from the *sorted* distinct labels.

    Sorting makes the mapping a function of the set of labels only, so the same estimator gets
    the same colour in every figure of a report, whatever order a figure meets them in.
    """
    names = sorted({str(label) for label in labels})
    if len(names) <= _QUALITATIVE_LIMIT:
        colours = sns.color_palette("colorblind", len(names))
    else:
        colours = sns.color_palette("husl", len(names))
    return {name: tuple(colour) for name, colour in zip(names, colours, strict=True)}
