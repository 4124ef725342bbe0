"""What every command shares: the one console, the one error exit, the one did-you-mean.

torch-free on purpose: `estibench --help` and `estibench list suites` import only this, typer
and rich.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from estibench.terminal import safe

PIPE_WIDTH = 160  # off a terminal rich would assume 80 columns and wrap every table row
BAD_INPUT = 2
INTERRUPTED = 130  # the shell's code for SIGINT


def _console() -> Console:
    """The terminal's own width; PIPE_WIDTH for logs and pipes, unless COLUMNS says otherwise."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=PIPE_WIDTH)


def _flags_without_a_type() -> None:
    """A flag (--report/--no-report, --help) takes no value: its help row shows no type.
    typer's help would print `<bool>` beside each, read as a value to pass."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "_estibench", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._estibench = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()
console = _console()
errors = Console(stderr=True, soft_wrap=True)  # a reason stays on one line, for grep


def fail(message: str) -> typer.Exit:
    """Print a bad-input message on stderr; the caller raises the returned Exit(2)."""
    errors.print(f"[bold red]error:[/] {safe(message)}", highlight=False)
    return typer.Exit(BAD_INPUT)


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@contextmanager
def warnings_as_messages() -> Iterator[None]:
    """Python warnings raised meanwhile, printed on stderr as one `warning:` line each (as the
    filters allow: by default once per place), without the source line Python would add."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        errors.print(f"[bold yellow]warning:[/] {safe(message)}", highlight=False)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
