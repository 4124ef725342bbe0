"""The claims table on the terminal, and `estibench claims RUN_DIR` (exit 1 when a claim is not
reproduced, for CI; 0 otherwise; 2 for bad input)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

STYLE = {"reproduced": "green", "not reproduced": "bold red", "inconclusive": "yellow",
         "not run": "dim"}


def claims_table(results: list) -> Table:
    table = Table(title="claims", box=box.SIMPLE_HEAD,
                  caption="evidence: the deciding part (the weakest when reproduced); "
                          "intervals are Bonferroni-corrected over a claim's parts")
    for column in ("#", "claim", "source", "verdict", "evidence"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = STYLE.get(r.verdict, "")
        table.add_row(str(r.index), escape(r.claim.statement), escape(r.claim.source),
                      f"[{style}]{r.verdict}[/]", escape(r.evidence()))
    return table


def _console() -> Console:
    """The terminal's width; 160 columns for logs and pipes (rich would wrap at 80)."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console()
    return Console(width=160)


def print_claims(run_dir: Path) -> list:
    """Print the run's claims table (nothing when its suite states no claims)."""
    from benchmarks.claims.check import check_run

    results = check_run(run_dir)
    if results:
        _console().print(claims_table(results))
    return results


def claims(run_dir: Annotated[Path, typer.Argument(help="A run directory")]) -> None:
    """Check a run's claims: exit 1 when any is not reproduced (0 otherwise)."""
    from benchmarks.store import StoreError
    from benchmarks.suite import SuiteError

    try:
        results = print_claims(run_dir)
    except (SuiteError, StoreError, OSError) as err:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {err}",
                                                   highlight=False)
        raise typer.Exit(2) from None
    if not results:
        _console().print("the run's suite states no claims")
    failed = [r for r in results if r.verdict == "not reproduced"]
    if failed:
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]{len(failed)} claim(s) not reproduced:[/] "
            + ", ".join(f"#{r.index}" for r in failed), highlight=False)
        raise typer.Exit(1)
