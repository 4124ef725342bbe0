"""A fixed look per estimator label: colour, marker and line style, derived from the label.

The same label gets the same look in every figure of every run (nothing depends on which other
estimators a run has). Every built-in estimator has a (colour, marker) pair of its own: twelve
colours (Okabe & Ito's colour-blind safe set and Tol's muted one), each at most twice, the two
estimators sharing one told apart by marker, line style and family. Any other estimator name (a
plugin) gets a pair no built-in uses, picked by a hash of the name. A label with options
("reinforce-loo") keeps its estimator's hue in a darker or lighter shade with a marker of its
own, so a family reads as one. Markers, line styles and shades keep the curves apart in
greyscale print.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

Colour = tuple[float, float, float]


def _rgb(hex_colour: str) -> Colour:
    value = hex_colour.lstrip("#")
    return tuple(int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#000000", "#56B4E9",
           "#882255", "#44AA99", "#999933", "#332288", "#AA4499")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">", "p", "8")
LINE_STYLES = ("-", "--", "-.", ":")
# name -> (colour, marker, line style): families share hues where they can (the score
# function in vermilion and its wine-red learned baselines, the relaxations in greens).
BUILT_IN: dict[str, tuple[str, str, str]] = {
    "pathwise": ("#0072B2", "o", "-"),
    "measure_valued": ("#0072B2", "X", ":"),
    "reinforce": ("#D55E00", "s", "-"),
    "unordered_set": ("#D55E00", "<", "--"),
    "gumbel_softmax": ("#009E73", "^", "--"),
    "rebar": ("#009E73", "P", "-."),
    "st_gumbel": ("#CC79A7", "D", "-."),
    "gapped_st": ("#CC79A7", "h", ":"),
    "straight_through": ("#E69F00", "v", ":"),
    "reinmax": ("#E69F00", "p", "-"),
    "exact": ("#000000", "8", "-"),
    "indecater": ("#000000", ">", ":"),
    "arm": ("#56B4E9", "o", "--"),
    "disarm": ("#56B4E9", "D", "-"),
    "carms": ("#56B4E9", "s", ":"),
    "nvil": ("#882255", "^", ":"),
    "muprop": ("#882255", "h", "-"),
    "relax": ("#44AA99", "s", ":"),
    "gumbel_rao": ("#44AA99", "<", "-"),
    "vimco": ("#999933", "v", "--"),
    "iwae": ("#332288", "P", "-"),
    "dreg": ("#AA4499", "X", "--"),
}
# A variant's shade: (mix with black, mix with white); the name alone keeps (0, 0).
SHADES = ((0.45, 0.0), (0.0, 0.45), (0.25, 0.0), (0.0, 0.25))
_USED = {(colour, marker) for colour, marker, _ in BUILT_IN.values()}
FREE_PAIRS = tuple((c, m) for c in COLOURS for m in MARKERS if (c, m) not in _USED)


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
    before the first '-' or '(' (labels are `name-option-...`, see `EstimatorSpec.id`; a bare
    name shown with its defaults is `name(option=value)`, see `display_estimators`)."""
    known = [n for n in names if label == n or label.startswith((f"{n}-", f"{n}("))]
    return max(known, key=len) if known else label.split("(", 1)[0].split("-", 1)[0]


def _shade(colour: Colour, dark: float, light: float) -> Colour:
    return tuple(c * (1 - dark) * (1 - light) + light for c in colour)  # type: ignore[return-value]


def look(label: str, name: str | None = None) -> Look:
    """The look of an estimator label (`name`: its registered name, when known)."""
    base = name or base_name(label)
    if base in BUILT_IN:
        hex_colour, marker, linestyle = BUILT_IN[base]
    else:
        digest = _digest(base)
        hex_colour, marker = FREE_PAIRS[digest % len(FREE_PAIRS)]
        linestyle = LINE_STYLES[(digest // 64) % len(LINE_STYLES)]
    colour = _rgb(hex_colour)
    if label == base or label.startswith(f"{base}("):  # the estimator at its defaults
        return Look(colour, marker, linestyle)
    # A variant: its estimator's hue, shaded, with a marker no estimator of that hue has.
    digest = _digest(label)
    dark, light = SHADES[digest % len(SHADES)]
    taken = {m for c, m, _ in BUILT_IN.values() if c == hex_colour} | {marker}
    free = [m for m in MARKERS if m not in taken]
    marker = free[(digest // 4) % len(free)]
    linestyle = LINE_STYLES[(digest // 32) % len(LINE_STYLES)]
    return Look(_shade(colour, dark, light), marker, linestyle)
