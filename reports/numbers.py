"""One number format per table column, with as many digits as the standard error supports.

    fmt = column_format(means, ses)   # the same format for every row of the column
    fmt.text(mean, se)                # '12.34 ± 0.56'

A column whose standard errors are known shows two significant digits of its smallest error
and the means to the same decimal place; without errors (one seed), four significant digits of
its largest value. Columns spanning more than three decades, or very large or small, use
scientific notation with a fixed number of significant digits instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MISSING = "–"
_SE_DIGITS = 2  # significant digits of a standard error
_PLAIN_DIGITS = 4  # significant digits without one
_MAX_DECIMALS = 6


def _finite(values: Iterable[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def _magnitude(value: float) -> int:
    return math.floor(math.log10(abs(value))) if value else 0


@dataclass(frozen=True)
class ColumnFormat:
    scientific: bool
    digits: int  # decimals (fixed) or significant digits (scientific)

    def number(self, value: float | None) -> str:
        values = _finite([value])
        if not values:
            return MISSING
        if self.scientific:
            return f"{values[0]:.{max(self.digits - 1, 0)}e}"
        return f"{values[0]:.{self.digits}f}"

    def text(self, mean: float | None, se: float | None = None) -> str:
        """``mean ± se`` in this column's format; the mean alone without an error, or with an
        error of exactly 0 (the same value in every seed: a count, a constant)."""
        shown = self.number(mean)
        if shown == MISSING or not _finite([se]) or se == 0:
            return shown
        error = self.number(se)
        if float(error) == 0:  # below the column's last decimal: its own digit, not "0.000000"
            error = f"{float(se):.1g}"  # type: ignore[arg-type]
        return f"{shown} ± {error}"


def column_format(means: Iterable[float | None], ses: Iterable[float | None] = ()
                  ) -> ColumnFormat:
    """The format of a column of means (and their standard errors, where known)."""
    values = [v for v in _finite(means) if v != 0]
    errors = [e for e in _finite(ses) if e > 0]
    if not values:
        return ColumnFormat(False, 0 if not errors else _decimals(min(errors)))
    largest, smallest = max(abs(v) for v in values), min(abs(v) for v in values)
    if largest >= 1e5 or largest < 1e-3 or largest / smallest > 1e3:
        if errors:  # significant digits the best-measured value supports
            digits = max(_magnitude(v) - _magnitude(e) + _SE_DIGITS
                         for v, e in zip(values, errors, strict=False))
        else:
            digits = _PLAIN_DIGITS
        return ColumnFormat(True, min(max(digits, 1), _PLAIN_DIGITS + 1))
    if errors:
        return ColumnFormat(False, _decimals(min(errors)))
    return ColumnFormat(False, min(max(_PLAIN_DIGITS - 1 - _magnitude(largest), 0),
                                   _MAX_DECIMALS))


def _decimals(error: float) -> int:
    """Decimals that show two significant digits of `error`."""
    return min(max(_SE_DIGITS - 1 - _magnitude(error), 0), _MAX_DECIMALS)
