"""The one exception type raised by :mod:`estibench.benchmarks.data` for bad input."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset request or a data file is invalid.

    Every message names the offending field (or file), the value found and what is allowed or
    expected, so a user can fix the call, the suite file or the files on disk without reading code.
    It subclasses :class:`ValueError` so generic callers that catch bad values still catch it.
    """
