"""Errors raised by the measurements."""

from __future__ import annotations


class MetricsError(ValueError):
    """Bad input to a measurement: the message names the field, the value and what is allowed."""


class NonFiniteGradientError(MetricsError):
    """Some gradient estimates contained NaN or Inf; the message names the estimator, the
    objective and how many replicas were affected."""


def choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    """`value` checked to be one of `allowed` (a `MetricsError` naming `field` otherwise)."""
    if value not in allowed:
        raise MetricsError(
            f"{field} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
        )
    return str(value)


def integer(field: str, value: object, minimum: int) -> int:
    """`value` checked to be an integer >= `minimum` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise MetricsError(f"{field} must be an integer >= {minimum}, got {value!r}")
    return value


__all__ = ["MetricsError", "NonFiniteGradientError", "choice", "integer"]
