"""The plan of a run: a suite expanded into its cells, each checked once for applicability.

Every (objective, estimator, S) pair is built once and dry-run on the objective's example
input: an estimator that refuses the objective (`EstimatorError`) makes its cells "not
applicable" with the reason; one that fails otherwise (a plugin's bug) makes them fail without
taking the run down. What the built pair tells (the temperature that runs, f evaluations per
sample, whether the objective reads data) goes into each `CellSpec`.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from estibench import estimators
from estibench.benchmarks.harness.catalogue import evaluations_per_sample
from estibench.benchmarks.harness.spec import CellSpec, EstimatorChoice, Temperature
from estibench.benchmarks.harness.temperature import temperature_of
from estibench.benchmarks.harness.time_limit import (
    PLAN_TIME_LIMIT,
    TimeLimitExceeded,
    time_limit,
)
from estibench.benchmarks.results import rundir
from estibench.benchmarks.suites.schema import (
    EstimatorSpec,
    MetricsSpec,
    ObjectiveSpec,
    ReferenceSpec,
    Suite,
    parse_suite,
)
from estibench.estimators.errors import ContractError


@dataclass(frozen=True)
class Plan:
    """A suite expanded: cells to run, pairs that do not apply and cells whose estimator is
    broken (each with its reason)."""

    runnable: list[CellSpec]
    inapplicable: list[tuple[CellSpec, str]]
    broken: list[tuple[CellSpec, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.runnable) + len(self.inapplicable) + len(self.broken)


class _Broken(Exception):
    """The estimator itself fails (a plugin's bug): its cells fail, the others run."""

    def __init__(self, reason: str, temperature: Temperature) -> None:
        super().__init__(reason)
        self.temperature = temperature




@dataclass(frozen=True)
class _Checked:
    """What building and dry-running a pair found."""

    reason: str | None = None  # why the estimator does not apply
    temperature: Temperature = None
    evaluations_per_sample: float | None = None
    toy: bool | None = None


def _temperature(estimator: estimators.Estimator, options: dict[str, Any],
                 schedule: dict[str, float] | None) -> Temperature:
    try:
        return temperature_of(estimator, options, schedule)
    except Exception:  # a plugin whose temperature cannot be read: its cells say so
        return None


def _spec_temperature(spec: EstimatorSpec, schedule: dict[str, float] | None) -> Temperature:
    """The temperature of an estimator that was not dry-run; None if it cannot be built."""
    if spec.missing is not None:
        return None
    try:
        estimator = estimators.get(spec.name, **spec.options)
    except Exception:
        return None
    return _temperature(estimator, spec.options, schedule)


def _check(objective_spec: ObjectiveSpec, estimator_spec: EstimatorSpec, num_samples: int,
           schedule: dict[str, float] | None) -> _Checked:
    """Build the pair and dry-run one estimate; `_Broken` (with the exception's last line) if
    building or running it fails other than by the estimator refusing the objective."""
    if estimator_spec.missing is not None:
        return _Checked(reason=estimator_spec.missing)
    objective = objective_spec.build()
    temperature = None
    try:
        with time_limit(PLAN_TIME_LIMIT, f"planning {estimator_spec.id} on {objective_spec.id}"):
            estimator = estimators.get(estimator_spec.name, **estimator_spec.options)
            temperature = _temperature(estimator, estimator_spec.options, schedule)
            objective.check(estimator)
            with torch.no_grad():  # a dry run catches option-dependent refusals (loo with S=1)
                out = objective.estimate(objective.example_input(), estimator, num_samples)
            per_sample = evaluations_per_sample(objective, estimator, num_samples, out)
    except TimeLimitExceeded as err:
        raise _Broken(str(err), temperature) from None
    except ContractError as err:
        raise _Broken(str(err), temperature) from None
    except estimators.EstimatorError as err:
        return _Checked(reason=str(err), temperature=temperature)
    except Exception as err:
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        raise _Broken(last, temperature) from None
    return _Checked(None, temperature, per_sample, objective.example_input() is None)


def resolved_metrics(objective_spec: ObjectiveSpec, metrics: MetricsSpec) -> MetricsSpec:
    """The metrics with `reference = "auto"` resolved for this objective, so each cell's record
    says what its bias was measured against: "exact" where the objective has an exact
    gradient, else pathwise where it applies, else reinforce with the leave-one-out baseline."""
    if metrics.reference != "auto":
        return metrics
    try:
        objective = objective_spec.build()
    except Exception:
        return metrics  # its cells fail with the reason; nothing to resolve
    if objective.has_exact:
        return metrics.model_copy(update={"reference": "exact"})
    candidates = (_IWAE_REFERENCES if getattr(objective, "bound", "elbo") == "iwae"
                  else _REFERENCES)
    for name, options in candidates:
        try:
            objective.check(estimators.get(name, **options))
        except estimators.EstimatorError:
            continue
        reference = ReferenceSpec(estimator=name, options=options)
        return metrics.model_copy(update={"reference": reference})
    return metrics.model_copy(update={"reference": "exact"})  # no reference applies


# Unbiased estimators a reference is drawn with, in order of preference: pathwise (lowest
# variance where it applies), else the leave-one-out score function, which applies to any
# latent; for the IWAE bound, its pathwise and VIMCO estimators.
_REFERENCES = (("pathwise", {}), ("reinforce", {"baseline": "loo"}))
_IWAE_REFERENCES = (("iwae", {}), ("vimco", {}))


def expand(suite: Suite, seeds: list[int] | None = None) -> Plan:
    """Every (objective, estimator, seed, num_samples) cell of the suite. Cells record the
    data's content hash, so they are identified by the data, not by where it was read (this
    loads the data: `DataError` if it cannot)."""
    data = suite.data.model_dump()
    data["sha256"] = rundir.data_sha256(data)
    runnable: list[CellSpec] = []
    inapplicable: list[tuple[CellSpec, str]] = []
    broken: list[tuple[CellSpec, str]] = []
    shared = suite.estimator(suite.train_with) if suite.protocol == "shared" else None
    schedule = suite.training.model_dump()["temperature"]  # None: no schedule
    for obj in suite.objectives:
        metrics = resolved_metrics(obj, suite.metrics)
        for est in suite.estimators:
            for num_samples in est.num_samples or suite.num_samples:
                measured = trained = None
                reason = failure = None
                try:
                    measured = _check(obj, est, num_samples, schedule)
                    reason = measured.reason
                    if reason is None and shared is not None:
                        trained = _check(obj, shared, suite.train_num_samples or num_samples,
                                         schedule)
                        if trained.reason is not None:
                            reason = f"trainer {shared.id}: {trained.reason}"
                except _Broken as err:
                    failure = str(err)
                    if measured is None:
                        measured = _Checked(temperature=err.temperature)
                    else:
                        trained = _Checked(temperature=err.temperature)
                if shared is None:
                    trained = measured
                elif trained is None:
                    trained = _Checked(temperature=_spec_temperature(shared, schedule))
                train_spec = shared or est
                for seed in seeds if seeds is not None else suite.seeds:
                    cell = CellSpec(
                        suite=suite.name, protocol=suite.protocol,
                        objective=obj.id, objective_name=obj.reference,
                        objective_options=obj.options,
                        estimator=EstimatorChoice(est.id, est.name, est.options,
                                                  measured.temperature),
                        trainer=EstimatorChoice(train_spec.id, train_spec.name,
                                                train_spec.options, trained.temperature),
                        trainer_training=train_spec.own_training(),
                        train_num_samples=suite.train_num_samples if shared else None,
                        seed=seed, num_samples=num_samples, data=data,
                        training=suite.training, metrics=metrics,
                        evaluations_per_sample=measured.evaluations_per_sample,
                        toy=measured.toy,
                    )
                    cell = dataclasses.replace(cell, time_limit=cell_time_limit(suite, cell))
                    if failure is not None:
                        broken.append((cell, failure))
                    elif reason is None:
                        runnable.append(cell)
                    else:
                        inapplicable.append((cell, reason))
    return Plan(runnable, inapplicable, broken)


MIN_CELL_TIME_LIMIT = 900.0  # seconds: the default limit is never shorter
CELL_TIME_FACTOR = 30  # the default limit: this many times the cell's rough estimate


def cell_time_limit(suite: Suite, cell: CellSpec) -> float:
    """The suite's `cell_timeout`, else CELL_TIME_FACTOR x the cell's rough estimate on one
    core, at least MIN_CELL_TIME_LIMIT: generous, since the estimate ignores the pair's own
    speed and the machine's load."""
    if suite.cell_timeout is not None:
        return suite.cell_timeout
    from estibench.benchmarks.harness.cost import rough_seconds

    return max(MIN_CELL_TIME_LIMIT, CELL_TIME_FACTOR * rough_seconds(cell))


def with_overrides(suite: Suite, seeds: list[int] | None = None,
                   data_path: str | None = None) -> Suite:
    """The suite with the command line's seeds and data path, validated like the file."""
    if seeds is None and data_path is None:
        return suite
    raw: dict[str, Any] = suite.model_dump()
    if seeds is not None:
        raw["seeds"] = seeds
    if data_path is not None:
        raw["data"]["path"] = data_path
    return parse_suite(raw, "(with --seeds / --data-path)")
