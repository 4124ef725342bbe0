"""`estibench.run`: run a suite from Python, as `estibench run` does.

    result = estibench.run("smoke", out="runs/smoke", progress=True)
    result.run_dir, result.ok, result.failed, result.not_applicable, result.failures
    Path(result)                      # the run directory (the result is path-like)

It writes the report as the CLI does unless `report=False` (or a callable of the run directory
to do something else).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunResult:
    """What a run left: its directory, cells by status, the failures with their reasons."""

    run_dir: Path
    ok: int
    failed: int
    not_applicable: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (cell, reason)
    report: Path | None = None

    def __fspath__(self) -> str:
        return os.fspath(self.run_dir)

    def __str__(self) -> str:
        return str(self.run_dir)

    @property
    def all_ok(self) -> bool:
        return self.failed == 0


def counts(run_dir: Path) -> RunResult:
    """The cells of a run directory, counted by status, with the failures' reasons."""
    from estibench.benchmarks.results.store import CELL_CONFIG_KEYS, Store, describe_cell

    with Store.open(run_dir, create=False) as store:
        cells = store.cells(CELL_CONFIG_KEYS)
    statuses = cells["status"]
    failures = [(describe_cell(c), r or "") for c, s, r in
                zip(cells["config"], statuses, cells["reason"], strict=True) if s == "failed"]
    return RunResult(run_dir, int((statuses == "ok").sum()), int((statuses == "failed").sum()),
                     int((statuses == "not_applicable").sum()), failures)


def run(
    suite: Any = None,
    *,
    progress: bool = False,
    report: bool | Callable[[Path], Any] = True,
    **options: Any,
) -> RunResult:
    """Run a suite (name, path or `Suite`); see `estibench.benchmarks.harness.runner.run` for
    the options (out, resume, device, seeds, executor, on_start, on_cell, on_todo).

    progress: print the progress (an ETA by cost done; one line per cell off a terminal).
    report: write RUN_DIR/report/ (True, the default), not (False), or call report(run_dir).
    """
    from estibench.benchmarks.harness.runner import run as run_suite

    if progress:
        from rich.console import Console

        from estibench.progress import RunProgress

        with RunProgress(Console()) as shown:
            callbacks = {"on_todo": shown.on_todo, "on_start": shown.on_start,
                         "on_cell": shown.on_cell}
            run_dir = run_suite(suite, **{**callbacks, **options})
    else:
        run_dir = run_suite(suite, **options)
    written = None
    if report is True:
        written = write_report(run_dir)
    elif callable(report):
        report(run_dir)
    result = counts(run_dir)
    return RunResult(result.run_dir, result.ok, result.failed, result.not_applicable,
                     result.failures, written)


def write_report(run_dir: Path, image_format: str = "png", dpi: int | None = None) -> Path:
    """Write RUN_DIR/report/ (HTML, Markdown, figures) and return the HTML page."""
    from estibench.reports import write_report as write

    options = {} if dpi is None else {"dpi": dpi}
    return write(run_dir, image_format=image_format, **options)["html"]


def recommend(
    objective: str,
    *,
    budget: str | float = "5m",
    estimators: list[str] | None = None,
    checkpoints: int | list[int] = 3,
    num_samples: list[int] | None = None,
    steps: int | None = None,
    options: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "cpu",
    progress: bool = False,
    report: bool = True,
    on_plan: Callable[[Any], Any] | None = None,
) -> Any:
    """Which estimator to use for `objective`: every applicable estimator run on it, ranked by
    the mean squared error of its gradient at equal cost (`reports.ranking`).

    objective: a registered objective, a factory ("my_pkg.models:make", "path/model.py:make")
        or a suite file (its first objective, data and training); options: the objective's.
    budget: "90s", "5m", "1h" or seconds: the cost model sizes the measurement to fit
        (`harness.recommend`). estimators: names (default: every registered one).
    checkpoints: how many points of the shared trajectory to measure at (fewer if the budget
        needs it), or the steps themselves. num_samples: the S values (default 1 and 4).
    steps: training steps (default: the suite's, 200). data: a [data] table.
    on_plan(plan): told the sized plan before anything runs.

    Returns the ranking as a DataFrame (columns `reports.ranking.COLUMNS`, estimators labelled
    as reports show them: `reinforce` beside the trainer `reinforce-loo` is
    `reinforce(baseline=none)`); its `attrs` hold run_dir, inapplicable ((estimator, reason)
    pairs), predicted and elapsed seconds.
    """
    import time

    from estibench.benchmarks.harness import recommend as planner
    from estibench.reports import load
    from estibench.reports.aggregate import load_cells
    from estibench.reports.conventions import biased_estimators
    from estibench.reports.ranking import ranking

    started = time.perf_counter()
    seconds = planner.parse_budget(budget)
    suite = planner.base_suite(objective, options=options, estimator_names=estimators,
                               num_samples=num_samples, steps=steps, data=data, seed=seed)
    plan = planner.plan_recommendation(suite, seconds, checkpoints)
    if on_plan is not None:
        on_plan(plan)
    result = run(plan.suite, out=out, device=device, progress=progress, report=report)
    table = ranking(load(result.run_dir), biased_estimators(load_cells(result.run_dir)))
    table.attrs.update(run_dir=result.run_dir, inapplicable=plan.inapplicable,
                       predicted=plan.planning + plan.predicted,
                       elapsed=time.perf_counter() - started, report=result.report)
    return table
