"""Text for the terminal: what the progress display and the CLI print of user and exception
text (labels, reasons, claim statements, paths)."""

from __future__ import annotations

import re

from rich.markup import escape

# C0 and C1 control characters but newline and tab: a label or an error that carries terminal
# escape sequences must not recolour, move or clear the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: object) -> str:
    """User or exception text made printable: control characters removed, rich markup
    escaped (shown as written, never interpreted)."""
    return escape(_CONTROL.sub("", str(text)))
