"""`estibench recommend OBJECTIVE`: which estimator to use, measured on the user's objective.

Every applicable estimator (or the named ones) runs at a few checkpoints of one shared training
trajectory; the table ranks them by the mean squared error of the gradient at equal cost and
names the best only where it is ahead beyond the noise (`estibench.reports.ranking`).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from estibench.cli.common import console, errors, fail, safe, warnings_as_messages


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs; values read as Python literals (4, 0.5, true, "x"), else as text."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must be KEY=VALUE, got {pair!r}")
        literal = {"true": "True", "false": "False"}.get(text.strip().lower(), text)
        try:
            options[key.strip()] = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            options[key.strip()] = text
    return options


def _integers(option: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} must name at least one integer, got {text!r}")
    return values


def _data(text: str | None) -> dict[str, Any] | None:
    """A dataset name (digits, mnist) or a file of the user's (.npy, .npz, .pt, .csv)."""
    if text is None:
        return None
    if Path(text).suffix or "/" in text:
        return {"name": "file", "path": text, "binarization": "none"}
    return {"name": text}


def recommend(
    objective: Annotated[str, typer.Argument(
        help="A registered objective, a factory (my_pkg.models:make, path/model.py:make) or a "
             "suite file (its first objective, data and training)")],
    budget: Annotated[str, typer.Option(
        help="Time for the whole recommendation: 90s, 5m, 1h; the cost model sizes the "
             "measurement (replicas, then checkpoints) to fit")] = "5m",
    estimators: Annotated[str, typer.Option(
        help="all, or comma-separated estimator names")] = "all",
    checkpoints: Annotated[str, typer.Option(
        help="How many points of the training trajectory to measure at, or the steps "
             "(comma-separated)")] = "3",
    num_samples: Annotated[str, typer.Option(
        "--num-samples", help="The numbers of samples S compared (comma-separated)")] = "1,4",
    steps: Annotated[int | None, typer.Option(
        help="Training steps of the shared trajectory \\[default: the suite's, 200]")] = None,
    option: Annotated[list[str] | None, typer.Option(
        help="An option of the objective, KEY=VALUE (repeatable)")] = None,
    data: Annotated[str | None, typer.Option(
        help="digits | mnist | a data file of yours (.npy, .npz, .pt, .csv)")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the trajectory and the noise")] = 0,
    out: Annotated[Path | None, typer.Option(
        help="Run directory (default runs/recommend-<time>)")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    report: Annotated[bool, typer.Option(help="Write the report (the ranking opens it)")]
    = True,
) -> None:
    """Which estimator should I use? Rank every applicable estimator on OBJECTIVE by the mean
    squared error of its gradient at equal cost."""
    from estibench.api import recommend as run_recommendation
    from estibench.cli.app import bad_input

    started = time.perf_counter()
    try:
        count_or_steps = _integers("--checkpoints", checkpoints)
        assert count_or_steps is not None
        points: int | list[int] = (count_or_steps[0] if "," not in checkpoints
                                   else count_or_steps)
        names = None if estimators.strip() == "all" else [
            n.strip() for n in estimators.split(",") if n.strip()]
        options = _options(option)
        samples = _integers("--num-samples", num_samples)
    except ValueError as err:
        raise fail(str(err)) from None

    def planned(plan: Any) -> None:
        checkpoint_text = ", ".join("final" if c == -1 else str(c) for c in plan.checkpoints)
        console.print(
            f"{plan.cells} cells (one trajectory trained by {safe(str(plan.suite.train_with))}"
            f"), M = {plan.replicas} replicas at steps {checkpoint_text}; predicted "
            f"{plan.predicted + plan.planning:.0f} s of the {budget} budget", highlight=False)
        for label, reason in plan.inapplicable:
            console.print(f"  not applicable: {safe(label)}: {safe(reason)}", highlight=False)

    try:
        with warnings_as_messages():
            table = run_recommendation(
                objective, budget=budget, estimators=names, checkpoints=points,
                num_samples=samples, steps=steps, options=options, data=_data(data), seed=seed,
                out=out, device=device, progress=True, report=report, on_plan=planned)
    except bad_input() as err:
        raise fail(str(err)) from None
    _print(table)
    elapsed = time.perf_counter() - started
    console.print(f"run directory: [bold]{safe(str(table.attrs['run_dir']))}[/]")
    if table.attrs.get("report") is not None:
        console.print(f"report: {safe(str(table.attrs['report']))}")
    console.print(f"took {elapsed:.0f} s (budget {safe(budget)})", highlight=False)
    if table.empty:
        errors.print("no estimator could be measured: see the run's failures "
                     f"(estibench show {safe(str(table.attrs['run_dir']))})", highlight=False)
        raise typer.Exit(1)


def _print(table: Any) -> None:
    """The final checkpoint's ranking per objective, then the best at every checkpoint."""
    from rich.table import Table

    from estibench.reports.ranking import answer, display

    for objective, rows in table.groupby("objective", sort=True):
        final = rows[rows["step"] == rows["step"].max()]
        ranked = display(final, compact=True)
        shown = Table(title=safe(f"{objective} at step {int(final['step'].iloc[0])} "
                                 f"(gradient w.r.t. the {final['wrt'].iloc[0]})"),
                      title_justify="left")
        for column in ranked.columns:
            shown.add_column(safe(column))
        for row in ranked.rows:
            shown.add_row(*[safe(v) for v in row])
        console.print(shown)
    console.print("‡ biased by design. MSE = squared bias + variance of one estimate; at equal "
                  "cost the variance is scaled by the estimator's cost over the costliest's.",
                  highlight=False)
    for line in answer(table):
        console.print(f"[bold]{safe(line)}[/]", highlight=False)
