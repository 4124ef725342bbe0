"""Command-line overrides of a suite and `estibench run --dry-run`.

Overrides make a new, validated suite (so the run stores what actually ran) whose description
names them; a dry run expands the suite and prints its cells, the pairs that do not apply with
the reasons, and a rough time, without running or storing anything.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from estibench.benchmarks.suites.schema import (
    EstimatorSpec,
    ObjectiveSpec,
    Suite,
    SuiteError,
    error_lines,
    parse_suite,
)
from estibench.cli.common import safe


def _select(kind: str, wanted: list[str], specs: list[Any]) -> list[dict[str, Any]]:
    """Entries whose label, name or factory is wanted; a registered name not in the suite is
    added with its default options, and so is an objective factory ("module:function",
    "file.py:function")."""
    chosen = []
    for name in wanted:
        found = [s for s in specs if name in (s.id, s.name, getattr(s, "factory", None))]
        if not found:
            key = "factory" if kind == "objective" and ":" in name else "name"
            spec_type = EstimatorSpec if kind == "estimator" else ObjectiveSpec
            try:
                found = [spec_type(**{key: name})]
            except ValidationError as err:
                labels = ", ".join(s.id for s in specs)
                why = "; ".join(line.removeprefix(f"{key}: ").removeprefix("(top level): ")
                                for line in error_lines(err))
                raise SuiteError(f"--{kind} {name!r}: not in the suite ({labels}) and "
                                 f"{why}") from None
        chosen += [s.model_dump(exclude_defaults=True) for s in found]
    return chosen


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def apply_overrides(
    suite: Suite,
    estimator: str | None = None,
    objective: str | None = None,
    seeds: list[int] | None = None,
    steps: int | None = None,
) -> Suite:
    """The suite with command-line overrides applied (comma-separated names/labels)."""
    raw = suite.model_dump(exclude_defaults=True)
    raw["name"] = suite.name
    notes = []
    if (wanted := _names(estimator)) is not None:
        raw["estimators"] = _select("estimator", wanted, suite.estimators)
        notes.append(f"--estimator {estimator}")
        train_with = suite.train_with
        if suite.protocol == "shared" and train_with not in wanted:
            raw["estimators"] += [suite.estimator(train_with).model_dump(exclude_defaults=True)]
    if (wanted := _names(objective)) is not None:
        raw["objectives"] = _select("objective", wanted, suite.objectives)
        notes.append(f"--objective {objective}")
    if seeds is not None:
        raw["seeds"] = seeds
        notes.append(f"--seeds {','.join(map(str, seeds))}")
    if steps is not None:
        raw["training"] = {**raw.get("training", {}), "steps": steps}
        notes.append(f"--steps {steps}")
    if not notes:
        return suite
    left_out = suite.left_out.model_dump()
    kept = {"estimators": {EstimatorSpec(**spec).id for spec in raw["estimators"]},
            "objectives": {ObjectiveSpec(**spec).id for spec in raw["objectives"]}}
    for kind, specs in (("estimators", suite.estimators), ("objectives", suite.objectives)):
        left_out[kind] += [s.id for s in specs if s.id not in kept[kind]]
    if steps is not None and left_out["steps"] is None:
        left_out["steps"] = suite.training.steps
    raw["left_out"] = left_out
    raw["description"] = (suite.description + " " if suite.description else "") + (
        f"(overridden: {' '.join(notes)})")
    return parse_suite(raw, "with command-line overrides")


SHOWN_CELLS = 500  # the dry run lists this many cells, then counts the rest


def dry_run(suite: Suite, console: Console) -> None:
    """Print the cells a run of `suite` would have, the inapplicable pairs and a rough time."""
    from estibench.benchmarks.harness.cost import cell_units, estimate_seconds, pair_key
    from estibench.benchmarks.harness.plan import expand

    plan = expand(suite)
    table = Table(title=f"{suite.name}: {len(plan.runnable)} cells to run")
    for column in ("cell", "work (f evaluations)"):
        table.add_column(column)
    for cell in plan.runnable[:SHOWN_CELLS]:
        table.add_row(safe(cell.describe()), f"{cell_units(cell):.3g}")
    if len(plan.runnable) > SHOWN_CELLS:  # a listing nobody reads, and minutes to print
        rest = plan.runnable[SHOWN_CELLS:]
        table.add_row(f"... and {len(rest):,} more cells",
                      f"{sum(cell_units(c) for c in rest):.3g} in all")
    console.print(table)
    if plan.inapplicable:
        skipped = Table(title=f"{len(plan.inapplicable)} cells not applicable")
        for column in ("objective", "estimator", "S", "seeds", "reason"):
            skipped.add_column(column, overflow="fold")
        pairs: dict[tuple[str, str, int], tuple[list[int], str]] = {}
        for cell, reason in plan.inapplicable:
            key = (cell.objective, cell.estimator.label, cell.num_samples)
            pairs.setdefault(key, ([], reason))[0].append(cell.seed)
        for (obj, est, s), (seeds, reason) in pairs.items():
            skipped.add_row(safe(obj), safe(est), str(s), ",".join(map(str, seeds)),
                            safe(reason))
        console.print(skipped)
    if plan.broken:  # the run records them as failed at once, with the reason
        broken = Table(title=f"{len(plan.broken)} cells that will fail: their estimator's "
                             "dry run failed")
        for column in ("cell", "reason"):
            broken.add_column(column, overflow="fold")
        for cell, reason in plan.broken:
            broken.add_row(safe(cell.describe()), safe(reason))
        console.print(broken)
    if plan.runnable:
        timed = len({pair_key(cell) for cell in plan.runnable})
        with console.status(f"timing {timed} estimator-objective pairs on this machine"):
            seconds = estimate_seconds(plan.runnable)
        shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        console.print(f"estimated time: about {shown} on this machine, on one "
                      "thread per cell (from a few timed training steps and a timed probe "
                      "of the gradient statistics per pair and of each reference gradient's "
                      "estimator, at this machine's present load; "
                      "with replicas = \"auto\" at its minimum M, which heavy-tailed "
                      "estimators exceed)", highlight=False)
    console.print("dry run: nothing was run or stored", highlight=False)
