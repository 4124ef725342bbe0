"""The `estibench` command line: a thin layer over `benchmarks.run` and `reports`.

Exit codes: 0 all cells ok; 1 some cells failed (listed) or a comparison found a regression;
2 bad input (a message, no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import estimators
from benchmarks import data as datasets
from benchmarks import objectives
from benchmarks.claims.console import claims, print_claims
from benchmarks.objectives import ObjectiveError
from benchmarks.store import StoreError
from benchmarks.suite import SuiteError, available_suites, load_suite

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark Monte Carlo gradient estimators on shared VAE objectives.")
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # reasons stay on one line for grep
BAD_INPUT = (SuiteError, ObjectiveError, estimators.EstimatorError, datasets.DataError,
             StoreError, ValueError, FileNotFoundError)


def fail(message: str) -> typer.Exit:
    """Print a bad-input message and exit 2 (no traceback)."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def _table(frame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    return table


@app.command()
def run(
    suite: Annotated[str | None, typer.Argument(
        help="Shipped suite name or path to a .toml [default: standard]")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default runs/<suite>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="Resume this run directory")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated seeds overriding the suite")] = None,
    data_path: Annotated[str | None, typer.Option(help="Data file/dir (full MNIST)")] = None,
    executor: Annotated[str, typer.Option(help="inprocess | pool | dask")] = "inprocess",
    workers: Annotated[int, typer.Option(help="Worker processes for --executor pool "
                                         "(> 1 implies pool)")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address, tcp://HOST:PORT (--executor dask)")] = None,
    local_workers: Annotated[int | None, typer.Option(
        help="Start a local Dask cluster with N worker processes (--executor dask)")] = None,
    dashboard: Annotated[bool, typer.Option(help="Serve the Dask dashboard (local cluster)")]
    = False,
    report: Annotated[bool, typer.Option(help="Write the HTML/Markdown report at the end")] = True,
    quick: Annotated[bool, typer.Option(help="Apply the suite's [quick] table (fewer steps, "
                                        "replicas, seeds)")] = False,
) -> None:
    """Run a suite: every cell trained and measured, results in RUN_DIR/results.sqlite."""
    from benchmarks.executors import make_executor
    from benchmarks.runner import run as run_suite

    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError:
        raise fail(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    try:
        if suite is None and resume is None:
            suite = "standard"
        spec = None if suite is None else load_suite(suite, quick=quick)
        if spec is not None and data_path is not None:
            data = spec.data.model_copy(update={"path": data_path})
            spec = spec.model_copy(update={"data": data})
        if executor == "inprocess" and (scheduler is not None or local_workers is not None):
            executor = "dask"  # naming a cluster means running on it
        if executor == "inprocess" and workers > 1:
            executor = "pool"
        runner = make_executor(executor, workers=workers, scheduler=scheduler,
                               local_workers=local_workers, dashboard=dashboard)
    except BAD_INPUT as err:
        raise fail(str(err)) from None
    if getattr(runner, "dashboard_link", None):
        console.print(f"Dask dashboard: {runner.dashboard_link}")

    failed: list[tuple[str, str]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("cells", total=None)

        def on_start(total: int, todo: int) -> None:
            progress.update(task, total=todo,
                            description=f"{todo} of {total} cells to run")

        def on_cell(result, done: int, todo: int) -> None:
            c = result.config
            label = f"{c['objective']} / {c['estimator']} / seed {c['seed']}"
            if result.status == "failed":
                failed.append((label, result.reason or ""))
            progress.update(task, advance=1, description=f"{label}: {result.status}")

        try:
            run_dir = run_suite(spec, out=out, resume=resume, device=device, seeds=seed_list,
                                executor=runner, on_start=on_start, on_cell=on_cell)
        except BAD_INPUT as err:
            raise fail(str(err)) from None
        finally:
            runner.close()
    _print_summary(run_dir)
    print_claims(run_dir)  # findings, not failures: the exit status does not change
    if report:
        _write_report(run_dir)
    console.print(f"run directory: [bold]{run_dir}[/]")
    if failed:
        errors.print(f"[bold red]{len(failed)} cell(s) failed:[/]")
        for label, reason in failed:
            errors.print(f"  {label}: {reason}", highlight=False)
        raise typer.Exit(1)


def _print_summary(run_dir: Path) -> None:
    from benchmarks.summary import summary

    table = summary(run_dir)
    if not table.empty:
        console.print(_table(table, "summary (means over seeds)"))


def _write_report(run_dir: Path) -> None:
    try:
        from reports import write_report
    except ImportError:  # the reports package is optional for the harness
        return
    paths = write_report(run_dir)
    console.print(f"report: [bold]{paths['html']}[/]")


@app.command("list")
def list_(
    what: Annotated[str, typer.Argument(help="estimators | objectives | datasets | suites")],
) -> None:
    """List what is available."""
    choices = {"estimators": estimators.available, "objectives": objectives.available,
               "datasets": datasets.available, "suites": available_suites}
    if what not in choices:
        raise fail(f"cannot list {what!r}{estimators.did_you_mean(what, list(choices))}; "
                   f"choose one of {', '.join(choices)}")
    for name in choices[what]():
        console.print(name)


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="A run directory")]) -> None:
    """Show a run: cells by status, failures and inapplicable pairs with reasons, summary."""
    from benchmarks.summary import cell_table

    try:
        cells = cell_table(run_dir)
    except BAD_INPUT as err:
        raise fail(str(err)) from None
    console.print(f"[bold]{run_dir}[/]: {len(cells)} cells")
    for status, count in cells["status"].value_counts().items():
        console.print(f"  {status}: {count}")
    for status in ("failed", "not_applicable"):
        rows = cells[cells["status"] == status]
        if len(rows):
            frame = rows[["objective", "estimator", "seed", "reason"]].drop_duplicates(
                ["objective", "estimator", "reason"])
            console.print(_table(frame, status.replace("_", " ")))
    _print_summary(run_dir)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    format: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Output file")] = None,
) -> None:
    """Write the tidy metrics table (one row per cell, step, metric) as CSV or Parquet."""
    from benchmarks.store import export as export_table

    try:
        path = export_table(run_dir, format, out)
    except BAD_INPUT as err:
        raise fail(str(err)) from None
    console.print(str(path))


def _register_report_commands() -> None:
    """`estibench report` and `estibench compare` come from the reports package (the CLI is the
    one place the harness and the reports meet)."""
    try:
        from reports import commands
    except ImportError:
        return
    app.command()(commands.report)
    app.command()(commands.compare)


_register_report_commands()
app.command()(claims)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
