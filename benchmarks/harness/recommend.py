"""The suite `estibench recommend` runs: every applicable estimator on one objective, measured at
a few checkpoints of one shared training trajectory, sized by the cost model to fit a budget.

    plan = plan_recommendation("categorical_vae", budget_seconds=300)
    plan.suite            # the suite to run (`runner.run(plan.suite)`)
    plan.predicted        # seconds the cost model predicts for it
    plan.inapplicable     # [(estimator, reason)]: those that do not apply, with the reason

What the budget buys: training is the user's (steps, batch), so the cost model trades the
measurement's precision and coverage: replicas M per checkpoint (from 1024 down to 64) first,
then the number of checkpoints (from the requested number down to 1); the reference gradient
of an objective without an exact one uses 4 M replicas (at most 4096). Timing the pairs for the
prediction takes seconds itself and is charged to the budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from estibench import estimators
from estibench.benchmarks.harness import cost
from estibench.benchmarks.harness.plan import expand, resolved_metrics
from estibench.benchmarks.harness.spec import CellSpec, EstimatorChoice
from estibench.benchmarks.suites.schema import (
    EstimatorSpec,
    MetricsSpec,
    ObjectiveSpec,
    ReferenceSpec,
    Suite,
    SuiteError,
    load_suite,
    parse_suite,
)

REPLICAS = (1024, 512, 256, 128, 64)  # tried in this order until the plan fits
REFERENCE_FACTOR = 4  # the reference's replicas per measured replica
MAX_REFERENCE_REPLICAS = 4096
SAFETY = 0.85  # share of the budget the prediction may fill (the prediction is rough)
NUM_SAMPLES = (1, 4)
CHECKPOINTS = 3
# Trainers of the shared trajectory, in order of preference (the first that applies).
TRAINERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("pathwise", {}), ("reinforce", {"baseline": "loo"}), ("iwae", {}), ("vimco", {}))
TRAIN_NUM_SAMPLES = 4
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h)?\s*$")


def parse_budget(text: str | float | int) -> float:
    """"90s", "5m", "1.5h" or a number of seconds -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = DURATION.match(str(text))
        if match is None:
            raise SuiteError(f"budget must be a duration such as 90s, 5m or 1h, got {text!r}")
        unit = match.group(2) or "s"
        seconds = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if not (math.isfinite(seconds) and seconds > 0):
        raise SuiteError(f"budget must be a positive duration, got {text!r}")
    return seconds


def every_estimator() -> list[tuple[str, dict[str, Any]]]:
    """Every registered estimator with its default options (aliases once), and REINFORCE with
    the leave-one-out baseline beside the plain one."""
    chosen: list[tuple[str, dict[str, Any]]] = []
    for name in estimators.available():
        try:
            canonical = estimators.get(name).name
        except Exception:  # a plugin that cannot be built with its defaults
            canonical = name
        if canonical == name:
            chosen.append((name, {}))
            if name == "reinforce":
                chosen.append(("reinforce", {"baseline": "loo"}))
    return chosen


def _by_label(name: str) -> tuple[str, dict[str, Any]]:
    """A name, or the label of one of `every_estimator` (reinforce-loo), as (name, options)."""
    for registered, options in every_estimator():
        if name == registered or (options and name == EstimatorSpec(
                name=registered, options=options).id):
            return registered, options
    return name, {}  # validated (with a did-you-mean) by the suite


@dataclass(frozen=True)
class RecommendationPlan:
    suite: Suite
    predicted: float  # seconds the cost model predicts for the run
    planning: float  # seconds spent timing the pairs
    replicas: int
    checkpoints: list[int]
    inapplicable: list[tuple[str, str]] = field(default_factory=list)  # (estimator, reason)
    cells: int = 0


def _objective_spec(objective: str | ObjectiveSpec, options: dict[str, Any]) -> ObjectiveSpec:
    if isinstance(objective, ObjectiveSpec):
        return objective
    key = "factory" if ":" in objective else "name"
    return ObjectiveSpec(**{key: objective, "options": options})


def base_suite(
    objective: str | ObjectiveSpec,
    *,
    options: dict[str, Any] | None = None,
    estimator_names: list[str] | None = None,
    num_samples: list[int] | None = None,
    steps: int | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
) -> Suite:
    """The recommendation suite before the budget sizes its measurement. `objective`: a
    registered name, a factory reference, or a suite file (its first objective, data and
    training)."""
    template: Suite | None = None
    if isinstance(objective, str) and objective.endswith(".toml"):
        template = load_suite(objective)
        spec = template.objectives[0]
        if options:
            spec = ObjectiveSpec(**{**spec.model_dump(exclude_defaults=True),
                                    "options": {**spec.options, **options}})
    else:
        spec = _objective_spec(objective, options or {})
    probe = resolved_metrics(spec, MetricsSpec(reference="auto"))
    built = spec.build()
    groups = built.parameter_groups()
    wrt = ["encoder"] if groups.get("encoder") else ["distribution"]
    wanted = every_estimator() if not estimator_names else [
        _by_label(name) for name in estimator_names]
    trainer = _trainer(built)
    entries = [{"name": n, "options": o} for n, o in wanted]
    if trainer not in [(e["name"], e["options"]) for e in entries]:
        entries.append({"name": trainer[0], "options": trainer[1]})
    trainer_label = EstimatorSpec(name=trainer[0], options=trainer[1]).id
    raw: dict[str, Any] = {
        "name": "recommend",
        "description": f"Which estimator for {spec.id}: every applicable estimator at "
                       f"checkpoints of one trajectory trained by {trainer_label}",
        "protocol": "shared",
        "train_with": trainer_label,
        "train_num_samples": TRAIN_NUM_SAMPLES,
        "seeds": [seed],
        "num_samples": list(num_samples or NUM_SAMPLES),
        "objectives": [spec.model_dump(exclude_defaults=True)],
        "estimators": entries,
        "metrics": {"wrt": wrt, "bounds": False, "throughput": True,
                    "throughput_min_run_time": 0.05,
                    "reference": (probe.reference.model_dump()
                                  if isinstance(probe.reference, ReferenceSpec) else "exact")},
    }
    if template is not None:
        raw["data"] = template.data.model_dump(exclude_defaults=True)
        raw["training"] = template.training.model_dump(exclude_defaults=True)
    if data is not None:
        raw["data"] = data
    if steps is not None:
        raw.setdefault("training", {})["steps"] = steps
    return parse_suite(raw, "estibench recommend")


def _trainer(objective: Any) -> tuple[str, dict[str, Any]]:
    for name, options in TRAINERS:
        if name not in estimators.available():
            continue
        try:
            objective.check(estimators.get(name, **options))
        except estimators.EstimatorError:
            continue
        return name, options
    raise SuiteError(f"objective '{objective.name}': no estimator applies to train it "
                     f"(tried {', '.join(n for n, _ in TRAINERS)})")


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """`count` checkpoints spread over [0, steps], the last at the final step."""
    if count <= 1 or steps == 0:
        return [-1]
    points = sorted({round(i * steps / (count - 1)) for i in range(count - 1)})
    return [p for p in points if p < steps] + [-1]


def _sized(suite: Suite, replicas: int, checkpoints: list[int]) -> Suite:
    metrics = suite.metrics.model_dump()
    metrics.update(replicas=replicas, checkpoints=checkpoints)
    if isinstance(metrics.get("reference"), dict):
        metrics["reference"]["replicas"] = min(MAX_REFERENCE_REPLICAS,
                                               max(64, REFERENCE_FACTOR * replicas))
    return parse_suite({**suite.model_dump(), "metrics": metrics}, "estibench recommend")


def _reference_cost(cell: CellSpec) -> tuple[float, float]:
    """(fixed, per replica) of the reference gradient at one checkpoint (shared by the cells)."""
    reference = cell.metrics.reference
    if not isinstance(reference, ReferenceSpec):
        return 0.0, 0.0
    as_cell = dataclasses.replace(
        cell, estimator=EstimatorChoice(reference.estimator, reference.estimator,
                                        reference.options),
        num_samples=reference.num_samples)
    try:
        return cost.statistics_seconds(as_cell)
    except Exception:
        return 0.0, 0.0


def plan_recommendation(suite: Suite, budget_seconds: float,
                        checkpoints: int | list[int] = CHECKPOINTS) -> RecommendationPlan:
    """Size `suite` (from `base_suite`) to the budget: the most replicas, then the most
    checkpoints, whose predicted time fits SAFETY x what is left of the budget."""
    started = time.perf_counter()
    steps = suite.training.steps
    if isinstance(checkpoints, int):
        options = [checkpoint_steps(steps, n) for n in range(max(checkpoints, 1), 0, -1)]
    else:
        options = [sorted(set(checkpoints))]
    probe = _sized(suite, REPLICAS[0], options[0])
    plan = expand(probe)
    inapplicable = _by_estimator(plan)
    costs = cost.cell_seconds(plan.runnable)
    reference = _reference_cost(plan.runnable[0]) if plan.runnable else (0.0, 0.0)
    planning = time.perf_counter() - started
    left = budget_seconds - planning
    tried: list[float] = []
    for points in options:
        k = len({steps if c == -1 else c for c in points})
        for replicas in REPLICAS:
            reference_replicas = min(MAX_REFERENCE_REPLICAS, max(64, REFERENCE_FACTOR * replicas))
            predicted = sum(c.total(k, replicas) for c in costs)
            predicted += k * (reference[0] + reference_replicas * reference[1])
            tried.append(predicted)
            if predicted <= SAFETY * left:
                return RecommendationPlan(
                    _sized(suite, replicas, points), predicted, planning, replicas, points,
                    inapplicable, len(plan.runnable))
    smallest = min(tried) if tried else 0.0
    raise SuiteError(
        f"budget {budget_seconds:.0f} s is too small: the smallest plan ({len(plan.runnable)} "
        f"cells, {suite.training.steps} training steps, 1 checkpoint, M = {REPLICAS[-1]}) "
        f"takes about {smallest:.0f} s after {planning:.0f} s of timing; raise --budget, lower "
        f"--steps or name fewer --estimators")


def _by_estimator(plan: Any) -> list[tuple[str, str]]:
    """Estimators that apply at no S, with one reason each (those that refuse only some S,
    such as the leave-one-out baseline at S = 1, are ranked at the others)."""
    runnable = {c.estimator.label for c in plan.runnable}
    reasons: dict[str, str] = {}
    for cell, reason in plan.inapplicable:
        if cell.estimator.label not in runnable:
            reasons.setdefault(cell.estimator.label, reason)
    for cell, reason in plan.broken:
        reasons.setdefault(cell.estimator.label, f"fails: {reason}")
    return sorted(reasons.items())


__all__ = ["RecommendationPlan", "base_suite", "checkpoint_steps", "every_estimator",
           "parse_budget", "plan_recommendation"]
