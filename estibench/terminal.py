"""Text for the terminal: what the progress display and the CLI print of user and exception
text (labels, reasons, claim statements, paths)."""

from __future__ import annotations

from rich.markup import escape

from estibench.benchmarks.results.labels import printable


def safe(text: object) -> str:
    """User or exception text made printable: control characters removed, rich markup
    escaped (shown as written, never interpreted)."""
    return escape(printable(text))
