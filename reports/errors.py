"""The one exception type of the reports package."""

from __future__ import annotations


class ReportError(ValueError):
    """Bad input to a report or comparison: the message names what is wrong and what to do."""
