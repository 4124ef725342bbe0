"""A claim in a suite: a published statement about the suite's results, checked on every run.

Three kinds, told apart by which fields are given:

- compare: `left` `relation` `right`, two cells' metric ("reinforce > pathwise");
- value: `left` `relation` `value` (with `tolerance` for "=="), one cell's metric against a
  number ("equals 4 within 5%");
- trend: `cells` (in order) and `direction`, every consecutive pair compared ("the bias falls as
  the temperature falls").

A cell is named by objective label and estimator label (and `num_samples` when that estimator
runs with several). `objectives` repeats the claim for each listed objective, for the cells that
name none ("for every k"). `step` is "final", "every" (each checkpoint) or one checkpoint; a
cell may pin its own `step` (the same cell at step 0 and at the end).

Claims are validated against the suite that holds them (`errors_against`): a label, metric or
step the suite does not define is an error with its field path (`claims.0.left.estimator`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .metric_names import metric_names

Relation = Literal["<", ">", "=="]
Direction = Literal["increasing", "decreasing"]
# Metrics measured at the checkpoints; the others are logged during training or once at the end.
CHECKPOINT_PREFIXES = ("grad/", "test/")


class _Strict(BaseModel):
    # No inf or NaN (a claim against inf can never be decided), no string for a number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class CellRef(_Strict):
    objective: str | None = Field(
        None, description="objective label (default: each of the claim's objectives)")
    estimator: str = Field(description="estimator label")
    num_samples: int | None = Field(None, ge=1,
                                    description="S, when the estimator runs with several")
    step: Literal["final"] | int | None = Field(
        None, description="this cell's step instead of the claim's")


class Claim(_Strict):
    statement: str = Field(min_length=1, description="the claim in words, as the report prints it")
    source: str = Field(min_length=1,
                        description="where it is published (paper, table or figure)")
    metric: str = Field(
        description="the metric compared (a stored metric name, e.g. grad/encoder/snr_norm)")
    step: Literal["final", "every"] | int = Field(
        "final", description="final, every (each checkpoint) or one checkpoint")
    objectives: list[str] | None = Field(
        None, min_length=1,
        description="repeat the claim for each of these objective labels (cells naming none)")
    left: CellRef | None = Field(None, description="compare / value claims: the first cell")
    relation: Relation | None = Field(None, description="<, > or == (== needs tolerance)")
    right: CellRef | None = Field(None, description="compare claims: the second cell")
    value: float | None = Field(
        None, description="value claims: the number the metric is compared with")
    tolerance: float | None = Field(None, gt=0, lt=1,
                                    description="== claims: the relative tolerance")
    cells: list[CellRef] | None = Field(None, min_length=2,
                                        description="trend claims: the cells in order")
    direction: Direction | None = Field(
        None, description="trend claims: increasing or decreasing along cells")
    noise: Literal["auto", "seeds", "interval"] = Field(
        "auto", description="auto (seeds when there are several, else the metric's interval), "
                            "seeds, or interval")
    alpha: float = Field(0.05, gt=0, lt=0.5,
                         description="the family-wise level over the claim's parts")

    @model_validator(mode="after")
    def _shape(self) -> Claim:
        given = [k for k in ("right", "value", "cells") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a claim gives exactly one of `right` (compare two cells), "
                             "`value` (one cell against a number) or `cells` (a trend), got "
                             f"{', '.join(given) or 'none'}")
        if self.cells is not None:
            if self.direction is None:
                raise ValueError("a trend claim (`cells`) needs direction = \"increasing\" or "
                                 "\"decreasing\"")
            if self.left is not None or self.relation is not None:
                raise ValueError("a trend claim (`cells`) takes no `left` or `relation`")
            return self
        if self.left is None or self.relation is None:
            raise ValueError("a compare or value claim needs `left` and `relation`")
        if self.right is not None and self.right == self.left:
            raise ValueError("a compare claim needs two different cells: `left` and `right` "
                             "name the same one")
        if self.direction is not None:
            raise ValueError("`direction` belongs to trend claims (`cells`)")
        if self.relation == "==":
            if self.value is None or self.tolerance is None:
                raise ValueError("relation \"==\" compares with a `value` within a relative "
                                 "`tolerance` (e.g. value = 4.0, tolerance = 0.05)")
            if self.value == 0:
                raise ValueError("relation \"==\" needs a non-zero value (the tolerance is "
                                 "relative)")
        elif self.tolerance is not None:
            raise ValueError(f"`tolerance` applies to relation \"==\", not {self.relation!r}")
        return self

    @property
    def kind(self) -> str:
        return "trend" if self.cells is not None else "value" if self.value is not None \
            else "compare"

    def refs(self) -> Iterator[tuple[str, CellRef]]:
        """(field path, cell) for every cell the claim names."""
        if self.left is not None:
            yield "left", self.left
        if self.right is not None:
            yield "right", self.right
        for i, ref in enumerate(self.cells or []):
            yield f"cells.{i}", ref


Error = tuple[tuple[str | int, ...], str, Any]  # (loc, message, the offending value)


def _loc(path: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def _unknown(kind: str, value: Any, allowed: list[Any]) -> str:
    return f"unknown {kind} {value!r}; the suite defines: {', '.join(map(str, allowed))}"


def errors_against(suite: Any) -> list[Error]:
    """What the suite's claims name that the suite does not define (empty when all is well)."""
    # Labels that command-line overrides left out still name cells: those parts are "not run".
    left_out = suite.left_out
    objective_ids = [o.id for o in suite.objectives] + list(left_out.objectives)
    estimators = {e.id: e for e in suite.estimators}
    known_estimators = [*estimators, *left_out.estimators]
    metrics = metric_names(suite)
    steps = suite.training.steps
    checkpoints = sorted({steps if c == -1 else c for c in suite.metrics.checkpoints})
    errors: list[Error] = []
    for i, claim in enumerate(suite.claims):
        at = f"claims.{i}"
        if claim.metric not in metrics:
            errors.append((_loc(f"{at}.metric"), _unknown(
                "metric", claim.metric, _metric_families(metrics)), claim.metric))
        at_checkpoints = claim.metric.startswith(CHECKPOINT_PREFIXES)
        for j, name in enumerate(claim.objectives or []):
            if name not in objective_ids:
                errors.append((_loc(f"{at}.objectives.{j}"),
                               _unknown("objective label", name, objective_ids), name))
        step_fields = [(f"{at}.step", claim.step)]
        for path, ref in claim.refs():
            where = f"{at}.{path}"
            if ref.objective is None and claim.objectives is None:
                errors.append((_loc(f"{where}.objective"), "name the objective label, or list "
                               "the claim's `objectives`", None))
            elif ref.objective is not None and ref.objective not in objective_ids:
                errors.append((_loc(f"{where}.objective"),
                               _unknown("objective label", ref.objective, objective_ids),
                               ref.objective))
            if ref.estimator not in known_estimators:
                errors.append((_loc(f"{where}.estimator"),
                               _unknown("estimator label", ref.estimator, list(estimators)),
                               ref.estimator))
            elif ref.estimator in estimators:
                sizes = estimators[ref.estimator].num_samples or suite.num_samples
                if ref.num_samples is None and len(sizes) > 1:
                    errors.append((_loc(f"{where}.num_samples"), f"estimator "
                                   f"{ref.estimator!r} runs with num_samples {sizes}: say which",
                                   None))
                elif ref.num_samples is not None and ref.num_samples not in sizes:
                    errors.append((_loc(f"{where}.num_samples"), f"estimator "
                                   f"{ref.estimator!r} runs with num_samples {sizes}",
                                   ref.num_samples))
            if ref.step is not None:
                step_fields.append((f"{where}.step", ref.step))
        errors += _same_cells(claim, at, estimators, suite.num_samples, steps)
        for path, step in step_fields:
            if step == "final":
                continue
            if not at_checkpoints:
                errors.append((_loc(path), f"metric {claim.metric!r} is not measured at "
                               "checkpoints: use step = \"final\"", step))
            elif step != "every" and step not in checkpoints and left_out.steps is None:
                errors.append((_loc(path), f"step {step} is not a checkpoint; checkpoints: "
                               f"{checkpoints}", step))
    return errors


def _same_cells(claim: Claim, at: str, estimators: dict[str, Any], num_samples: list[int],
                steps: int) -> list[Error]:
    """Two of a claim's cells that are one cell once defaults are filled in (the suite's only
    S, the claim's step, "final" as the last step): a claim comparing a cell with itself."""
    def resolved(ref: CellRef) -> tuple[Any, ...]:
        spec = estimators.get(ref.estimator)
        sizes = (spec.num_samples or num_samples) if spec is not None else []
        size = ref.num_samples if ref.num_samples is not None or len(sizes) != 1 else sizes[0]
        step = ref.step if ref.step is not None else claim.step
        return (ref.objective, ref.estimator, size, steps if step == "final" else step)

    refs = list(claim.refs())
    seen: dict[tuple[Any, ...], str] = {}
    for path, ref in refs:
        key = resolved(ref)
        if key in seen:
            return [(_loc(f"{at}.{path}"), f"`{seen[key]}` and `{path}` name the same cell "
                     "(with the suite's defaults filled in): a claim needs different cells",
                     ref.estimator)]
        seen[key] = path
    return []


def _metric_families(metrics: list[str]) -> list[str]:
    """The names shown in an error, shortened to `grad/<wrt>/...` families where repetitive."""
    grads = sorted({m.split("/")[1] for m in metrics if m.startswith("grad/")})
    stats = sorted({m.split("/", 2)[2] for m in metrics if m.startswith("grad/")})
    rest = [m for m in metrics if not m.startswith("grad/")]
    shown = [f"grad/{{{','.join(grads)}}}/{{{','.join(stats)}}}"] if grads else []
    return shown + rest
