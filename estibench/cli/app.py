"""The `estibench` app: run, show, export and claims here; list, suite, report, compare and
status registered from their modules. A thin layer over `estibench.run` and `estibench.reports`.

Exit codes: 0 all cells ok; 1 some cells failed (listed) or a comparison found a regression;
2 bad input (a message, no traceback).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from estibench.cli import recommend as recommend_command
from estibench.cli import report as report_commands
from estibench.cli import status as status_command
from estibench.cli.catalogue import list_, suite_app
from estibench.cli.common import INTERRUPTED, console, errors, fail, safe, warnings_as_messages

if TYPE_CHECKING:
    from rich.table import Table

# torch, pandas and the suite models are imported inside the commands that need them:
# `estibench --help` and `estibench list suites` answer without them.
LARGE_SUITE = 10_000  # cells: a larger suite runs only with --yes

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark Monte Carlo gradient estimators on shared VAE objectives.")
app.command("list")(list_)
app.add_typer(suite_app, name="suite")


def bad_input() -> tuple[type[Exception], ...]:
    """The errors that mean bad input (exit 2), imported when a command needs them."""
    from estibench import estimators
    from estibench.benchmarks import data as datasets
    from estibench.benchmarks.objectives import ObjectiveError
    from estibench.benchmarks.results.store import StoreError
    from estibench.benchmarks.suites.schema import SuiteError

    return (SuiteError, ObjectiveError, estimators.EstimatorError, datasets.DataError,
            StoreError, ValueError, FileNotFoundError)


def _table(frame, title: str) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:  # labels wrap rather than lose their end; numbers stay whole
        numeric = frame[column].dtype.kind in "biuf"
        header = safe(str(column))
        table.add_column(header.replace(" ", "\n") if numeric else header, overflow="fold",
                         justify="right" if numeric else "left", no_wrap=numeric)
    for row in frame.itertuples(index=False):
        table.add_row(*[("-" if v != v else f"{v:.4g}") if isinstance(v, float) else safe(str(v))
                        for v in row])
    return table


@app.command()
def run(
    suite: Annotated[str | None, typer.Argument(
        help="Shipped suite name or path to a .toml \\[default: standard]")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default runs/<suite>-<time>)")] = None,
    resume: Annotated[Path | None, typer.Option(help="Resume this run directory")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated seeds overriding the suite")] = None,
    data_path: Annotated[str | None, typer.Option(help="Data file/dir (full MNIST)")] = None,
    executor: Annotated[str, typer.Option(help="inprocess | pool | dask | submitit")]
    = "inprocess",
    workers: Annotated[int, typer.Option(help="Worker processes for --executor pool "
                                         "(> 1 implies pool)")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address, tcp://HOST:PORT (--executor dask)")] = None,
    local_workers: Annotated[int | None, typer.Option(
        help="Start a local Dask cluster with N worker processes (--executor dask)")] = None,
    dashboard: Annotated[bool, typer.Option(help="Serve the Dask dashboard (local cluster)")]
    = False,
    cluster: Annotated[str | None, typer.Option(
        help="slurm | local: job arrays on SLURM, or the same on this machine (--executor "
             "submitit)", rich_help_panel="Cluster (submitit)")] = None,
    partition: Annotated[str | None, typer.Option(
        help="SLURM partition", rich_help_panel="Cluster (submitit)")] = None,
    time_limit: Annotated[float | None, typer.Option(
        "--time", help="Minutes each array task may run \\[SLURM default: 4 x the longest "
        "task's estimate, at least 60]", rich_help_panel="Cluster (submitit)")] = None,
    mem: Annotated[float | None, typer.Option(
        help="GB of memory per array task (SLURM)", rich_help_panel="Cluster (submitit)")]
    = None,
    gpus: Annotated[int | None, typer.Option(
        help="GPUs per array task", rich_help_panel="Cluster (submitit)")] = None,
    account: Annotated[str | None, typer.Option(
        help="SLURM account to charge", rich_help_panel="Cluster (submitit)")] = None,
    task_minutes: Annotated[float | None, typer.Option(
        help="Minutes of estimated work per array task (SLURM) \\[default: 10]",
        rich_help_panel="Cluster (submitit)")] = None,
    array_parallelism: Annotated[int | None, typer.Option(
        help="Array tasks running at once (SLURM's %N); --cluster local: the number of tasks "
             "\\[default: the cores]", rich_help_panel="Cluster (submitit)")] = None,
    report: Annotated[bool, typer.Option(help="Write the HTML/Markdown report at the end")] = True,
    dry_run: Annotated[bool, typer.Option(
        help="Print the cells, the pairs that do not apply and an estimated time; run nothing")]
    = False,
    estimator: Annotated[str | None, typer.Option(
        help="Only these estimators (comma-separated labels or names; recorded in the run)")]
    = None,
    objective: Annotated[str | None, typer.Option(
        help="Only these objectives (comma-separated labels or names; recorded in the run)")]
    = None,
    steps: Annotated[int | None, typer.Option(
        help="Training steps overriding the suite (recorded in the run)")] = None,
    image_format: Annotated[str, typer.Option(help="Report figures: png | svg | pdf")] = "png",
    dpi: Annotated[int | None, typer.Option(help="Report figure resolution (png)")] = None,
    quick: Annotated[bool, typer.Option(help="Apply the suite's \\[quick] table (fewer steps, "
                                        "replicas, seeds)")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help=f"Run a suite of more than {LARGE_SUITE:,} cells without asking")] = False,
    cell_timeout: Annotated[float | None, typer.Option(
        help="Seconds a cell may run before it is stopped and recorded as failed \\[default: "
             "the suite's cell_timeout, else 30 x the cell's estimate, at least 900]")] = None,
) -> None:
    """Run a suite: every cell trained and measured, results in RUN_DIR/results.sqlite."""
    from estibench.benchmarks.harness.executors import make_executor
    from estibench.benchmarks.harness.runner import run as run_suite
    from estibench.benchmarks.suites.schema import load_suite
    from estibench.cli.plan import apply_overrides
    from estibench.cli.plan import dry_run as print_plan
    from estibench.progress import RunProgress

    try:
        seed_list = None if seeds is None else [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if seed_list == []:
        raise fail(f"--seeds must name at least one integer, got {seeds!r}")
    try:
        if report and not dry_run:  # the report is written last: its options are checked first
            from estibench.reports.figures.standard import check_figure_options

            check_figure_options(image_format, dpi)
        if suite is None and resume is None:
            suite = "standard"
        if resume is not None and (estimator or objective or steps is not None):
            raise ValueError("--estimator, --objective and --steps change the suite; a resumed "
                             "run keeps the suite stored in its directory")
        spec = None if suite is None else load_suite(suite, quick=quick)
        if spec is not None and resume is None:  # overrides go into the stored suite
            spec = apply_overrides(spec, estimator, objective, seed_list, steps)
            seed_list = None
        if spec is not None and resume is None and not dry_run and not yes:
            _check_size(spec)
        if cell_timeout is not None:  # not part of what the run measures: resume may set it
            from estibench.benchmarks.suites.schema import MAX_CELL_TIMEOUT

            if not 0 < cell_timeout <= MAX_CELL_TIMEOUT:  # the suite key's bounds (inf too)
                raise ValueError(f"--cell-timeout must be a number of seconds in (0, "
                                 f"{MAX_CELL_TIMEOUT:g}], got {cell_timeout:g}")
            if spec is None:
                from estibench.benchmarks.results.rundir import stored_suite

                spec = stored_suite(Path(resume))  # type: ignore[arg-type]
            spec = spec.model_copy(update={"cell_timeout": cell_timeout})
        if dry_run:
            if spec is None:
                raise ValueError("--dry-run needs a suite")
            if data_path is not None:
                spec = spec.model_copy(update={
                    "data": spec.data.model_copy(update={"path": data_path})})
            print_plan(spec, console)
            return
        if executor == "inprocess" and (scheduler is not None or local_workers is not None):
            executor = "dask"  # naming a cluster means running on it
        if executor == "inprocess" and cluster is not None:
            executor = "submitit"
        if executor == "inprocess" and workers > 1:
            executor = "pool"
        cluster_options = {"partition": partition, "time_min": time_limit, "mem_gb": mem,
                           "gpus": gpus, "account": account, "task_minutes": task_minutes,
                           "array_parallelism": array_parallelism}
        runner = make_executor(executor, workers=workers, scheduler=scheduler,
                               local_workers=local_workers, dashboard=dashboard,
                               cluster=cluster, cluster_options=cluster_options)
    except bad_input() as err:
        raise fail(str(err)) from None
    if getattr(runner, "dashboard_link", None):
        console.print(f"Dask dashboard: {safe(runner.dashboard_link)}")
    run_dir = resume if resume is not None else out  # known once the runner claims one

    failed: list[tuple[str, str]] = []
    with RunProgress(console) as progress:

        def on_cell(result, done: int, todo: int) -> None:
            if result.status == "failed":
                from estibench.benchmarks.results.store import describe_cell

                failed.append((describe_cell(result.config), result.reason or ""))
            progress.on_cell(result, done, todo)

        def claimed(path: Path) -> None:
            nonlocal run_dir
            run_dir = path

        try:
            with warnings_as_messages():
                run_dir = run_suite(spec, out=out, resume=resume, device=device,
                                    seeds=seed_list, data_path=data_path, executor=runner,
                                    on_run_dir=claimed, on_todo=progress.on_todo,
                                    on_start=progress.on_start, on_cell=on_cell)
        except bad_input() as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            if run_dir is None:
                errors.print("interrupted before any cell ran", highlight=False)
            else:
                going_on = ("; its array tasks go on, and --resume collects what they finish"
                            if executor == "submitit" and cluster == "slurm" else "")
                errors.print(f"interrupted: completed cells are kept in {safe(str(run_dir))}"
                             f"{going_on}; finish the run with: estibench run --resume "
                             f"{safe(shlex.quote(str(run_dir)))}", highlight=False)
            raise typer.Exit(INTERRUPTED) from None
        finally:
            runner.close()
    _print_summary(run_dir)
    _print_counts(run_dir)
    from estibench.cli.claims import print_claims

    print_claims(run_dir)  # findings, not failures: the exit status does not change
    if report:
        _write_report(run_dir, image_format, dpi)
    console.print(f"run directory: [bold]{safe(str(run_dir))}[/]")
    if failed:
        errors.print(f"[bold red]{len(failed)} cell(s) failed:[/]")
        for label, reason in failed:
            errors.print(f"  {safe(label)}: {safe(reason)}", highlight=False)
        raise typer.Exit(1)


def _check_size(spec) -> None:
    """A suite of more than LARGE_SUITE cells runs only with --yes (a typo in a seed range or
    a list of S can make one of millions)."""
    from estibench.reports.aggregate import planned_cells

    cells = planned_cells(spec.model_dump()) or 0
    if cells > LARGE_SUITE:
        raise ValueError(
            f"suite {spec.name!r} has {cells:,} cells (objectives x each estimator's numbers of "
            f"samples x seeds), more than {LARGE_SUITE:,}: see them and an estimated time with "
            "--dry-run, and run it with --yes")


def _print_summary(run_dir: Path) -> None:
    from estibench.benchmarks.results.summary import summary

    _print_summary_tables(summary(run_dir))


def _print_summary_tables(table) -> None:
    """The summary, one table per objective (its label as the title, so the estimator and the
    numbers keep the width), without the columns that objective has no value in."""
    if table.empty:  # no cell completed: nothing to summarise
        return
    for objective, rows in table.groupby("objective", sort=True):
        rows = rows.drop(columns="objective").dropna(axis="columns", how="all")
        console.print(_table(rows, f"summary of {safe(str(objective))} (means over seeds)"))


def _print_counts(run_dir: Path) -> None:
    """cells: N ok, N failed, N not applicable, N never run (of the suite's plan)."""
    from estibench.api import counts
    from estibench.reports.aggregate import load_suite_config, planned_cells

    done = counts(run_dir)
    stored = done.ok + done.failed + done.not_applicable
    planned = planned_cells(load_suite_config(run_dir))
    missing = 0 if planned is None else max(planned - stored, 0)
    from estibench.benchmarks.results.rundir import running_pid

    pid = running_pid(run_dir)
    if pid is not None:  # a run is working in it now: the missing cells are pending
        console.print(f"cells: {done.ok} ok, {done.failed} failed, {done.not_applicable} not "
                      f"applicable, {missing} pending (a run is in progress, pid {safe(pid)})",
                      highlight=False)
        return
    line = (f"cells: {done.ok} ok, {done.failed} failed, {done.not_applicable} not applicable, "
            f"{missing} never run")
    console.print(line + (" (the run is incomplete: estibench run --resume "
                          f"{safe(shlex.quote(str(run_dir)))})" if missing else ""),
                  highlight=False)


def _write_report(run_dir: Path, image_format: str = "png", dpi: int | None = None) -> None:
    from estibench.api import write_report

    try:
        html = write_report(run_dir, image_format, dpi)
    except OSError as err:  # a full disk or a read-only directory: the cells are safe
        raise fail(f"the cells are stored in {run_dir}, but the report could not be written "
                   f"({err.strerror or err}); write it later with `estibench report "
                   f"{run_dir}`") from None
    console.print(f"report: [bold]{safe(str(html))}[/]")


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="A run directory")]) -> None:
    """Show a run: cells by status, failures and inapplicable pairs with reasons, summary."""
    from estibench.benchmarks.results.summary import cell_table, summary
    from estibench.reports.aggregate import problems_of

    try:
        cells = cell_table(run_dir)
        table = summary(run_dir)  # read before printing: a damaged store prints nothing
    except bad_input() as err:
        raise fail(str(err)) from None
    console.print(f"[bold]{safe(str(run_dir))}[/]", highlight=False)
    _print_counts(run_dir)
    # one row per pair and reason, with every seed and S it holds for (as the report lists)
    found = problems_of(cells)
    for status in ("failed", "not_applicable"):
        rows = found[found["status"] == status].drop(columns="status")
        if len(rows):
            console.print(_table(rows.rename(columns={"num_samples": "S"}),
                                 status.replace("_", " ")))
    _print_summary_tables(table)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    format: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Output file")] = None,
) -> None:
    """Write the tidy metrics table (one row per cell, step, metric) as CSV or Parquet."""
    from estibench.benchmarks.results.store import export as export_table

    try:
        path = export_table(run_dir, format, out)
    except bad_input() as err:
        raise fail(str(err)) from None
    console.print(safe(str(path)), highlight=False)


app.command()(report_commands.report)
app.command()(report_commands.compare)
app.command()(status_command.status)
app.command()(recommend_command.recommend)


@app.command()
def claims(run_dir: Annotated[Path, typer.Argument(help="A run directory")]) -> None:
    """Check the claims of a run's suite: exit 1 when a claim is not reproduced (for CI)."""
    from estibench.cli.claims import claims as check

    check(run_dir)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
