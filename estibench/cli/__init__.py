"""The `estibench` command line: one typer app, one module per group of commands.

`app` holds run, show, export and claims and registers the others: `catalogue` (list, suite
schema | show), `report` (report, compare); `plan` prints a dry run and applies the command
line's overrides; `common` is the one console, error exit and did-you-mean. torch and pandas
are imported inside the commands that need them, so `estibench --help` starts fast.
"""

from __future__ import annotations


def main() -> None:
    """The console script."""
    from estibench.cli.app import app

    app()
