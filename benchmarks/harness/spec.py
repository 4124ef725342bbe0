"""What one cell of a suite runs: `CellSpec`, typed and frozen, built once by the planner.

The planner (`plan.expand`) builds each cell's objective and estimator once to check that the
pair applies, and records what it learnt from them (the temperature that runs, f evaluations
per sample, whether the objective reads data); the executors carry the spec to wherever the
cell runs, where `run_cell` builds fresh, seeded instances from it (`build_objective`,
`EstimatorChoice.build`: the one place an estimator is built from a cell).

`to_json()` is the cell's identity: the JSON the store keeps and hashes into the cell key, with
the keys run directories have always had, so existing runs resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.results.store import cell_key, describe_cell
from estibench.benchmarks.suites.schema import MetricsSpec, TrainingSpec

# A temperature as it runs: a fixed value, a schedule (the suite's [training.temperature]
# table as a dict), or None for an estimator without one.
Temperature = float | dict[str, float] | None


@dataclass(frozen=True)
class EstimatorChoice:
    """An estimator as a suite names it: its label in results, registered name and options,
    and the temperature it runs at."""

    label: str
    name: str
    options: dict[str, Any]
    temperature: Temperature = None

    def build(self) -> estimators.Estimator:
        return estimators.get(self.name, **self.options)


@dataclass(frozen=True)
class CellSpec:
    """One cell: an objective trained with `trainer` and measured with `estimator` (the same
    under the suite's "own" protocol), for one seed and one S."""

    suite: str
    protocol: str
    objective: str  # the label results use
    # what builds it (`objectives.load_objective`): the registered name, or a factory reference
    # ("package.module:function", "path/to/file.py:function") that any process can import
    objective_name: str
    objective_options: dict[str, Any]
    estimator: EstimatorChoice
    trainer: EstimatorChoice
    seed: int
    num_samples: int
    data: dict[str, Any]  # the suite's [data] table with the content's sha256
    training: TrainingSpec
    metrics: MetricsSpec
    trainer_training: dict[str, Any] = field(default_factory=dict)  # its own optimizer
    train_num_samples: int | None = None  # S of the trainer (None: the cell's S)
    # Read off the pair the planner built (not part of the identity): for the cost model.
    evaluations_per_sample: float | None = field(default=None, compare=False)
    toy: bool | None = field(default=None, compare=False)  # the objective reads no data
    # seconds before the cell is stopped (None: no limit); not part of what the cell measures
    time_limit: float | None = field(default=None, compare=False)

    @property
    def kl(self) -> str:
        return self.objective_options.get("kl", "analytic")

    @property
    def bound(self) -> str:
        return self.objective_options.get("bound", "elbo")

    @property
    def trainer_num_samples(self) -> int:
        """S of the training steps: the shared trainer's own, else the cell's."""
        return self.num_samples if self.train_num_samples is None else self.train_num_samples

    @property
    def key(self) -> str:
        return cell_key(self.to_json())

    def build_objective(self) -> objectives.Objective:
        return objectives.load_objective(self.objective_name, **self.objective_options)

    def trains_with_the_measured_estimator(self) -> bool:
        return (self.trainer.name, self.trainer.options) == (self.estimator.name,
                                                             self.estimator.options)

    def describe(self) -> str:
        """objective / estimator / S / seed: how a cell is named on screen."""
        return describe_cell(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The cell's identity as the store keeps it."""
        return {
            "suite": self.suite, "protocol": self.protocol,
            "objective": self.objective, "objective_name": self.objective_name,
            "objective_options": self.objective_options, "kl": self.kl, "bound": self.bound,
            "estimator": self.estimator.label, "estimator_name": self.estimator.name,
            "estimator_options": self.estimator.options,
            "temperature": self.estimator.temperature,
            "trained_with": self.trainer.label, "trainer_name": self.trainer.name,
            "trainer_options": self.trainer.options,
            "trainer_temperature": self.trainer.temperature,
            # only when set, so the keys of cells without it do not change
            **({"trainer_training": self.trainer_training} if self.trainer_training else {}),
            **({"train_num_samples": self.train_num_samples}
               if self.train_num_samples is not None else {}),
            "seed": self.seed, "num_samples": self.num_samples,
            "data": self.data,
            "training": self.training.model_dump(),
            "metrics": _metrics_record(self.metrics),
        }


def _metrics_record(metrics: MetricsSpec) -> dict[str, Any]:
    """The metrics table as cells record it; `reference` only when it is not the default
    "exact", so the cells of suites without it keep their keys."""
    record = metrics.model_dump()
    if record["reference"] == "exact":
        del record["reference"]
    return record
