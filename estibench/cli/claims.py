"""The claims table on the terminal, and `estibench claims RUN_DIR` (exit 1 when a claim is not
reproduced, for CI; 0 otherwise; 2 for bad input)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from estibench.cli.common import console, errors, fail, safe

STYLE = {"reproduced": "green", "not reproduced": "bold red", "incomplete": "bold yellow",
         "inconclusive": "yellow",
         "not run": "dim"}


def claims_table(results: list) -> Table:
    table = Table(title="claims", box=box.SIMPLE_HEAD,
                  caption="evidence: the deciding part (the weakest when reproduced); "
                          "intervals are Bonferroni-corrected over a claim's parts")
    for column in ("#", "claim", "source", "verdict", "evidence"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = STYLE.get(r.verdict, "")
        table.add_row(str(r.index), safe(r.claim.statement), safe(r.claim.source),
                      f"[{style}]{r.verdict}[/]", safe(r.evidence()))
    return table


def print_claims(run_dir: Path) -> list:
    """Print the run's claims table (nothing when its suite states no claims)."""
    from estibench.benchmarks.claims.check import check_run, quick_note

    results = check_run(run_dir)
    if results:
        console.print(claims_table(results))
        if note := quick_note(run_dir, results):
            console.print(safe(note), style="yellow", highlight=False)
    return results


def claims(run_dir: Annotated[Path, typer.Argument(help="A run directory")]) -> None:
    """Check a run's claims: exit 1 when any is not reproduced, or incomplete (the run did not
    finish: its evidence is partial), 0 otherwise."""
    from estibench.benchmarks.results.store import StoreError
    from estibench.benchmarks.suites.schema import SuiteError

    try:
        results = print_claims(run_dir)
    except (SuiteError, StoreError, OSError) as err:
        raise fail(str(err)) from None
    if not results:
        console.print("the run's suite states no claims")
    failed = [r for r in results if r.verdict == "not reproduced"]
    incomplete = [r for r in results if r.verdict == "incomplete"]
    if failed:
        errors.print(
            f"[bold red]{len(failed)} claim(s) not reproduced:[/] "
            + ", ".join(f"#{r.index}" for r in failed), highlight=False)
    if incomplete:
        errors.print(
            f"[bold yellow]{len(incomplete)} claim(s) incomplete[/] (the run did not finish: "
            f"`estibench run --resume {safe(shlex.quote(str(run_dir)))}`): "
            + ", ".join(f"#{r.index}" for r in incomplete), highlight=False)
    if failed or incomplete:
        raise typer.Exit(1)
