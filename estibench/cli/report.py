"""``estibench report`` and ``estibench compare``: plain functions with typer annotations,
registered on the app by `estibench.cli.app`.

Exit codes: 0 fine; 1 ``compare`` found a regression; 2 bad input (a message, no traceback).
Heavy imports (pandas, matplotlib) happen inside the commands so the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from estibench.cli.common import console, errors, fail, safe

if TYPE_CHECKING:  # the real import is deferred: it pulls in pandas
    from estibench.reports.compare import Comparison

RunDir = Annotated[Path, typer.Argument(help="A run directory (it holds results.sqlite)")]


# quantity -> (short name, scale of the A and B columns)
_SHOWN = {"time per estimate": ("time (ms)", 1e3), "gradient variance": ("variance", 1.0),
          "test ELBO": ("ELBO (nats)", 1.0)}


def _change(value: float, ratio: bool) -> str:
    """Ratios as x1.23, differences with their sign (+0.5 nats)."""
    return f"x{value:.3g}" if ratio else f"{value:+.3g}"


def _comparison_table(result: Comparison) -> Table:
    """One row per (pair, quantity); the caption says how to read the columns."""
    t = result.thresholds
    caption = (f"change: B/A (ELBO: B - A); range: change ± {t.z:g} standard errors; limits: "
               f"time x{t.time:g}, variance x{t.variance:g}, ELBO -{t.bound:g} nats; "
               "*: no noise estimate (one seed, no IQR or CI), the limit alone decides")
    table = Table(title=safe(f"{result.run_b} against {result.run_a}"), caption=caption,
                  box=box.SIMPLE_HEAD)
    table.add_column("objective / estimator / S", overflow="fold", min_width=20)
    for column in ("quantity", "A", "B", "change", "range", "verdict"):
        table.add_column(column)
    for row in result.table.itertuples(index=False):
        name, scale = _SHOWN.get(row.quantity, (row.quantity, 1.0))
        ratio = row.quantity != "test ELBO"
        table.add_row(
            safe(f"{row.objective} / {row.estimator} / {row.num_samples}"), safe(name),
            f"{row.a * scale:.3g}", f"{row.b * scale:.3g}", _change(row.change, ratio),
            f"{_change(row.change_lo, ratio)}..{_change(row.change_hi, ratio)}",
            ("[bold red]REGRESSION[/]" if row.regression else "ok") + ("*" if row.note else ""),
        )
    return table


def report(
    run_dir: RunDir,
    out: Annotated[Path | None, typer.Option(
        help="Output directory \\[default: RUN_DIR/report]")] = None,
    format: Annotated[str, typer.Option(
        "--image-format", "--format", help="Figure file format: png | svg | pdf")] = "png",
    dpi: Annotated[int | None, typer.Option(help="Figure resolution \\[default: 110]")] = None,
) -> None:
    """Write the HTML and Markdown report of a run, its figures and summary.csv."""
    from estibench.benchmarks.results.store import StoreError
    from estibench.reports.errors import ReportError
    from estibench.reports.report import write_report

    try:
        paths = write_report(run_dir, out, image_format=format, dpi=dpi)
    except (ReportError, StoreError, OSError) as err:
        raise fail(str(err)) from None
    for name, path in paths.items():
        console.print(f"{name}: [bold]{safe(str(path))}[/]", highlight=False, soft_wrap=True)


def compare(
    run_a: Annotated[Path, typer.Argument(help="The baseline run directory")],
    run_b: Annotated[Path, typer.Argument(help="The run checked against the baseline")],
    time_threshold: Annotated[float, typer.Option(
        help="Flag time per estimate growing by more than this ratio (B/A)")] = 1.5,
    variance_threshold: Annotated[float, typer.Option(
        help="Flag gradient variance growing by more than this ratio (B/A)")] = 3.0,
    bound_threshold: Annotated[float, typer.Option(
        help="Flag the final test ELBO dropping by more than this many nats")] = 1.0,
) -> None:
    """Compare run B with baseline A; exit 1 when a change is beyond threshold and noise."""
    from estibench.benchmarks.results.store import StoreError
    from estibench.reports.compare import Thresholds
    from estibench.reports.compare import compare as compare_runs
    from estibench.reports.errors import ReportError

    try:
        thresholds = Thresholds(time=time_threshold, variance=variance_threshold,
                                bound=bound_threshold)
        result = compare_runs(run_a, run_b, thresholds)
    except (ReportError, StoreError, OSError) as err:
        raise fail(str(err)) from None
    table = _comparison_table(result)
    console.print(table)
    for note in result.notes:
        console.print(f"note: {safe(note)}", highlight=False)
    if not result.ok:
        errors.print(f"[bold red]{len(result.regressions)} regression(s):[/]")
        for line in result.regressions:
            errors.print(f"  {safe(line)}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]no regression[/]")
