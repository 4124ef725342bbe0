"""A fixed look per estimator label: colour, marker and line style, derived from the label.

The same label gets the same look in every figure of every run (nothing depends on which other
estimators a run has). The built-in estimators have colours of their own from a colour-blind
safe set (Okabe & Ito); any other estimator name gets one of a second set of distinct colours,
picked by a hash of the name. A label with options ("reinforce-loo") keeps its estimator's hue
in a darker or lighter shade, so a family reads as one. Markers and line styles, also fixed by
the label, keep the curves apart in greyscale print.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

Colour = tuple[float, float, float]


def _rgb(hex_colour: str) -> Colour:
    value = hex_colour.lstrip("#")
    return tuple(int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


# name -> (colour, marker, line style)
BUILT_IN: dict[str, tuple[str, str, str]] = {
    "pathwise": ("#0072B2", "o", "-"),
    "reinforce": ("#D55E00", "s", "-"),
    "gumbel_softmax": ("#009E73", "^", "--"),
    "st_gumbel": ("#CC79A7", "D", "-."),
    "straight_through": ("#E69F00", "v", ":"),
    "exact": ("#000000", "*", "-"),
}
OTHER_COLOURS = ("#56B4E9", "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#661100",
                 "#6699CC")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
LINE_STYLES = ("-", "--", "-.", ":")
# A variant's shade: (mix with black, mix with white); the name alone keeps (0, 0).
SHADES = ((0.45, 0.0), (0.0, 0.45), (0.25, 0.0), (0.0, 0.25))


@dataclass(frozen=True)
class Look:
    colour: Colour
    marker: str
    linestyle: str


def _digest(text: str) -> int:
    """A hash that is the same in every process (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def base_name(label: str, names: tuple[str, ...] = tuple(BUILT_IN)) -> str:
    """The estimator a label belongs to: the longest known name it starts with, else the part
    before the first '-' (labels are `name-option-...`, see `EstimatorSpec.id`)."""
    known = [n for n in names if label == n or label.startswith(f"{n}-")]
    return max(known, key=len) if known else label.split("-", 1)[0]


def _shade(colour: Colour, dark: float, light: float) -> Colour:
    return tuple(c * (1 - dark) * (1 - light) + light for c in colour)  # type: ignore[return-value]


def look(label: str, name: str | None = None) -> Look:
    """The look of an estimator label (`name`: its registered name, when known)."""
    base = name or base_name(label)
    if base in BUILT_IN:
        hex_colour, marker, linestyle = BUILT_IN[base]
    else:
        digest = _digest(base)
        hex_colour = OTHER_COLOURS[digest % len(OTHER_COLOURS)]
        marker = MARKERS[(digest // 8) % len(MARKERS)]
        linestyle = LINE_STYLES[(digest // 64) % len(LINE_STYLES)]
    colour = _rgb(hex_colour)
    if label == base:
        return Look(colour, marker, linestyle)
    digest = _digest(label)
    dark, light = SHADES[digest % len(SHADES)]
    marker = MARKERS[(MARKERS.index(marker) + 1 + (digest // 4) % (len(MARKERS) - 1))
                     % len(MARKERS)]
    linestyle = LINE_STYLES[(digest // 32) % len(LINE_STYLES)]
    return Look(_shade(colour, dark, light), marker, linestyle)
