"""Suites: a TOML file listing data, objectives, estimators, seeds, training and metric settings.

Validated with pydantic: unknown keys and bad values fail with the field path, the value and
what is allowed; misspelt names get a "did you mean". Shipped suites live in
`benchmarks/suites/*.toml` and are found by name (`load_suite("standard")`).
"""

from __future__ import annotations

import inspect
import re
import tomllib
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from estibench import estimators
from estibench.benchmarks import data as datasets
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import AutoReplicas
from estibench.benchmarks.suites.claims import Claim, errors_against

SUITES_DIR = Path(__file__).parent  # the shipped suites: *.toml beside this module


class SuiteError(ValueError):
    """A suite that cannot be loaded: the message names the field, the value and what is allowed."""


class _Strict(BaseModel):
    # No inf or NaN anywhere (a learning rate or temperature of inf would be accepted, then
    # measure nothing), and no coercion: "200" is not a number of steps.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


# torch's CPU generator keeps 32 bits of a seed (2^32 would repeat seed 0's draws); cells derive
# further seeds from it (seed * 100_003 + step), within int64
MAX_SEED = 2**32
MAX_SIZE = 1_000_000  # a layer, latent or toy dimension; beyond it nothing fits in memory
MAX_NUM_SAMPLES = 2**20
# Upper bounds on the numbers a run is made of: beyond them a run would not end (steps), not
# fit in memory (replicas) or fail every cell (a learning rate).
MAX_STEPS = 10_000_000
MAX_REPLICAS = 1_000_000
MAX_LEARNING_RATE = 1e3
MAX_RUN_TIME = 3600.0  # seconds of timing per measured function
MAX_CELL_TIMEOUT = 30 * 86400.0  # a month
MIN_TEMPERATURE = 1e-6  # below it logits / tau overflow in float32
# SLURM names (partition, account): letters, digits, '_', '.', '-'; comma-separated for several
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*$")
# SLURM's --time forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
SLURM_TIME_FORMS = "MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"
# Objective options that are sizes: positive integers (hidden: one or a list of them).
SIZE_OPTIONS = ("input_dim", "latent_dim", "variables", "categories", "hidden", "dims")


def _unique(field: str, values: list[Any]) -> None:
    repeated = sorted(repr(v) for v, n in Counter(values).items() if n > 1)
    if repeated:
        raise ValueError(f"{field} must not repeat a value (it would run the same cells "
                         f"twice), got {values}; repeated: {', '.join(repeated)}")


def _check_sizes(options: dict[str, Any]) -> None:
    for key in SIZE_OPTIONS:
        if key not in options:
            continue
        value = options[key]
        sizes = value if key == "hidden" and isinstance(value, list) else [value]
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or not (
                    1 <= size <= MAX_SIZE):
                raise ValueError(f"options.{key} must be "
                                 + ("an integer or a list of integers" if key == "hidden"
                                    else "an integer")
                                 + f" in [1, {MAX_SIZE}], got {value!r}")


def _check_name(kind: str, name: str, names: list[str]) -> str:
    if name not in names:
        hint = estimators.did_you_mean(name, names)
        raise ValueError(f"unknown {kind} {name!r}{hint}; available: {', '.join(names)}")
    return name


class DataSpec(_Strict):
    name: str = Field("digits", description="dataset (`estibench list datasets`)")
    binarization: Literal["fixed", "dynamic", "none"] = Field(
        "fixed", description="fixed: threshold once; dynamic: resample pixels each epoch; "
                             "none: the values as they are (any real numbers: your features)")
    threshold: float = Field(0.5, gt=0, lt=1, description="pixel threshold of fixed binarization")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share of examples held out")
    split_seed: int = Field(0, description="seed of the train/test split")
    path: str | None = Field(
        None, description="data file or directory (full MNIST: IDX files or an .npz; "
                          "dataset file: a .npy, .npz, .pt or .csv of examples (N, D))")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra keyword options of the dataset (file: array, the .npz or .pt "
                    "array to read)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name("dataset", v, datasets.available())


class ObjectiveSpec(_Strict):
    name: str | None = Field(
        None, description="objective (`estibench list objectives`); or give factory")
    factory: str | None = Field(
        None, description="instead of name, your own model: a function returning an "
                          "estibench Model or an Objective, as \"package.module:function\" "
                          "or \"path/to/file.py:function\" (relative to the working "
                          "directory); options are its keyword arguments")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="keyword options of the objective")
    label: str | None = Field(
        None, description="the name results use (default: the objective's name, or for a "
                          "factory file-or-module.function, with non-default options)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        return v if v is None else _check_name("objective", v, objectives.available())

    @field_validator("factory")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is not None and not objectives.is_reference(v):
            raise ValueError(f"factory must be \"package.module:function\" or "
                             f"\"path/to/file.py:function\", got {v!r}")
        return v

    @model_validator(mode="after")
    def _buildable(self) -> ObjectiveSpec:
        if (self.name is None) == (self.factory is None):
            raise ValueError("give name (a registered objective) or factory (\"module:function"
                             "\" or \"file.py:function\"): " + (
                                 "not both" if self.name is not None else "neither was given"))
        if self.name is not None:
            _check_sizes(self.options)
        _build(self.reference, self.options, objectives.load_objective, any_error=True)
        return self

    @property
    def reference(self) -> str:
        """What builds it (`objectives.load_objective`): the registered name or the factory."""
        return self.factory if self.factory is not None else str(self.name)

    def build(self) -> objectives.Objective:
        return objectives.load_objective(self.reference, **self.options)

    @property
    def id(self) -> str:
        """The label results use: `label`, else the name with its non-default options
        (categorical_vae-4-4), so two sizes of one model are two rows, never one; a factory's
        file or module and function (bandit.make_objective) with its non-default options."""
        if self.label:
            return self.label
        if self.factory is not None:
            return _label(objectives.short_name(self.factory), self.options,
                          lambda _: objectives.resolve_factory(str(self.factory)))
        return _label(str(self.name), self.options, objectives.registry.factory)

    @property
    def display(self) -> str:
        """How reports name it: `label`, else the name with each non-default option named
        (categorical_vae(categories=4, variables=4)); `id` stays the stored identity."""
        if self.label:
            return self.label
        if self.factory is not None:
            return _label(objectives.short_name(self.factory), self.options,
                          lambda _: objectives.resolve_factory(str(self.factory)), named=True)
        return _label(str(self.name), self.options, objectives.registry.factory, named=True)


class EstimatorSpec(_Strict):
    # optional: an estimator that may not be registered (not implemented yet, plugin missing):
    # then its cells are recorded as not applicable, with the reason, and its claims not run.
    optional: bool = Field(
        False, description="true: a name that is not registered (not implemented yet, plugin "
                           "missing) is recorded as not applicable and its claims as not run")
    name: str = Field(description="estimator (`estibench list estimators`)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="keyword options of the estimator")
    label: str | None = Field(
        None, description="the name results use (default: the name and its non-default options)")
    num_samples: list[int] | None = Field(
        None, description="numbers of samples for this estimator (overrides the suite's)")
    # The estimator's own parameters (a baseline network, a control variate), trained from its
    # aux_loss alone: optimizer and learning rate (None: the estimator's `aux_learning_rate`).
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="the optimizer of the estimator's own parameters (a baseline "
                            "network, a control variate), trained from its aux_loss alone")
    learning_rate: float | None = Field(
        None, gt=0,
        description="their learning rate (default: the estimator's, from its paper)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("optional") and v not in estimators.available():
            return v
        return _check_name("estimator", v, estimators.available())

    @property
    def missing(self) -> str | None:
        """Why an optional estimator cannot run (it is not registered), else None."""
        if self.name in estimators.available():
            return None
        return (f"optional estimator {self.name!r} is not registered (not implemented in this "
                "version, or its plugin is not installed)")

    @field_validator("num_samples")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            _check_num_samples(v)
        return v

    @model_validator(mode="after")
    def _buildable(self) -> EstimatorSpec:
        if self.missing is None:
            _build(self.name, self.options, estimators.get)
        return self

    def own_training(self) -> dict[str, Any]:
        """The settings of the estimator's own optimizer that differ from the defaults."""
        return {k: getattr(self, k) for k in ("optimizer", "learning_rate")
                if getattr(self, k) != type(self).model_fields[k].default}

    @property
    def id(self) -> str:
        """The label results use: `label`, else the canonical name (aliases resolved: u2g is
        disarm) with its non-default options (reinforce-loo); an unregistered optional
        estimator: its name and option values."""
        if self.label:
            return self.label
        if self.missing is not None:
            return "-".join([self.name, *(str(v) for _, v in sorted(self.options.items()))])
        name, options = estimators.registry.resolve(self.name, self.options)
        return _label(name, options, estimators.registry.factory)


class TemperatureSchedule(_Strict):
    """tau(step) = max(minimum, initial * exp(-rate * step)) (Jang et al. 2017). It drives the
    estimators that have a temperature and do not set one in their options: an option is what
    runs. Each cell records what ran in its config ("temperature")."""

    initial: float = Field(1.0, ge=MIN_TEMPERATURE, description="temperature at step 0")
    minimum: float = Field(0.5, ge=MIN_TEMPERATURE,
                           description="the temperature never goes below this")
    rate: float = Field(0.0, ge=0,
                        description="tau(step) = max(minimum, initial * exp(-rate * step))")


class TrainingSpec(_Strict):
    steps: int = Field(200, ge=0, le=MAX_STEPS, description="training steps per cell")
    batch_size: int = Field(32, ge=1, le=MAX_SIZE, description="training batch size")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="optimizer of the model's parameters (an estimator's own have "
                            "theirs: [[estimators]] optimizer)")
    learning_rate: float = Field(1e-3, gt=0, le=MAX_LEARNING_RATE,
                                 description="optimizer step size")
    log_every: int = Field(
        10, ge=1, description="record the training objective every this many steps")
    # None: every estimator keeps its own
    temperature: TemperatureSchedule | None = Field(
        None, description="the [training.temperature] table")
    # the training step's forward through torch.compile (cell.train)
    compile: bool = Field(
        False, description="compile the training step's forward with torch.compile (on CPU it "
                           "helps at small batch only sometimes, and costs seconds to minutes "
                           "per configuration)")


class ReferenceSpec(_Strict):
    """`[metrics.reference]`: the reference gradient where there is no exact one."""

    estimator: str = Field(
        description="a registered unbiased estimator (\"reinforce\" with baseline = \"loo\" "
                    "fits any latent; \"pathwise\" a reparameterisable one)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the estimator's options")
    num_samples: int = Field(8, ge=1, le=MAX_NUM_SAMPLES,
                             description="S of each of the reference's estimates")
    replicas: int = Field(4096, ge=8, le=MAX_REPLICAS,
                          description="estimates averaged into the reference (a quarter of "
                                      "them fix the bias test's directions)")

    @field_validator("estimator")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in estimators.available():
            raise ValueError(f"reference estimator {v!r} is not registered; available: "
                             f"{', '.join(estimators.available())}")
        return v


class MetricsSpec(_Strict):
    checkpoints: list[int] = Field(
        default_factory=lambda: [0, -1],
        description="steps at which gradients and bounds are measured (-1: the final step)")
    # M gradient estimates per measurement, or "auto": chunks until the total variance's
    # relative standard error is <= replicas_target, between replicas_min and replicas_max.
    replicas: int | Literal["auto"] = Field(
        64, description="independent gradient estimates M per checkpoint, or \"auto\": draw "
                        "them in chunks until the total variance's relative standard error is "
                        "at most replicas_target")
    replicas_target: float = Field(
        AutoReplicas.target, gt=0, lt=1,
        description="with replicas = \"auto\": the relative standard error of the total "
                    "variance to reach")
    replicas_min: int = Field(AutoReplicas.minimum, ge=3, le=MAX_REPLICAS,
                              description="with replicas = \"auto\": the fewest replicas drawn")
    replicas_max: int = Field(
        AutoReplicas.maximum, ge=3, le=MAX_REPLICAS,
        description="with replicas = \"auto\": the most replicas drawn (the precision may "
                    "then fall short: the report marks it)")
    eval_batch_size: int = Field(
        32, ge=1, le=MAX_SIZE,
        description="examples in the fixed batch the gradient statistics use")
    wrt: list[Literal["distribution", "encoder", "decoder"]] = Field(
        default_factory=lambda: ["distribution", "encoder"],
        description="parameter groups whose gradient statistics are recorded",
    )
    bounds: bool = Field(True, description="measure ELBO, IWAE-k and log p(x) on held-out data")
    bounds_examples: int = Field(200, ge=1, le=MAX_SIZE,
                                 description="held-out examples for the bounds")
    iwae_ks: list[int] = Field(default_factory=lambda: [1, 10, 100],
                               description="the k of each IWAE-k bound")
    reference: Literal["exact", "auto"] | ReferenceSpec = Field(
        default="exact",
        description="what bias is measured against: \"exact\" (the exact gradient, where the "
                    "objective has one; no bias otherwise), \"auto\" (the exact gradient, "
                    "else a reference: pathwise where it applies, else reinforce with the "
                    "leave-one-out baseline, S = 8, M = 4096), or a table naming the "
                    "reference estimator")
    throughput: bool = Field(
        True, description="time the estimator (per estimate, per step, the floor)")
    throughput_min_run_time: float = Field(
        0.1, gt=0, le=MAX_RUN_TIME, description="seconds of timing per measured function")

    @field_validator("iwae_ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1 or max(v) > MAX_NUM_SAMPLES:
            raise ValueError(f"iwae_ks must be a non-empty list of integers in [1, 2^20], "
                             f"got {v}")
        return sorted(set(v))

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, v: object) -> object:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool)
                           and 2 <= v <= MAX_REPLICAS):
            return v
        raise ValueError(f"replicas must be an integer in [2, {MAX_REPLICAS}] or 'auto'")

    def replicas_setting(self) -> int | AutoReplicas:
        """What `gradient_stats` takes: M, or "auto" with its target and range."""
        if self.replicas == "auto":
            return AutoReplicas(self.replicas_target, self.replicas_min, self.replicas_max)
        return self.replicas

    @model_validator(mode="after")
    def _replica_range(self) -> MetricsSpec:
        if self.replicas_min > self.replicas_max:
            raise ValueError(f"replicas_min ({self.replicas_min}) must be <= replicas_max "
                             f"({self.replicas_max})")
        return self


class QuickSpec(_Strict):
    """`[quick]`: what `estibench run NAME --quick` overrides (fewer steps, replicas, seeds)."""

    seeds: list[int] | None = Field(None, min_length=1, description="the seeds of a quick run")
    training: dict[str, Any] = Field(default_factory=dict,
                                     description="[training] keys overridden in a quick run")
    metrics: dict[str, Any] = Field(default_factory=dict,
                                    description="[metrics] keys overridden in a quick run")

    @field_validator("training", "metrics")
    @classmethod
    def _partial(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # every key and value as strict as in the full sections
        {"training": TrainingSpec, "metrics": MetricsSpec}[info.field_name].model_validate(v)
        return v


class LeftOut(_Strict):
    """What command-line overrides took out of the suite (`estibench run --estimator ...`):
    claims may still name these labels, and their parts come out "not run" (no cell in the
    run) instead of the suite failing validation; `steps` is the suite's own number of training
    steps when `--steps` replaced it (a claim's pinned step need not be a checkpoint then)."""

    estimators: list[str] = Field(
        default_factory=list, description="the estimator labels taken out (--estimator)")
    objectives: list[str] = Field(
        default_factory=list, description="the objective labels taken out (--objective)")
    steps: int | None = Field(
        None, description="the suite's own training steps, when --steps replaced them")


def slurm_minutes(text: str) -> float:
    """Minutes of a SLURM time ("90", "1:30:00", "2-12", ...); ValueError if it is none."""
    match = _SLURM_TIME.match(text.strip())
    if match is None:
        raise ValueError(f"not a SLURM time ({SLURM_TIME_FORMS})")
    days, first, second, third = match.groups()
    parts = [int(v) for v in (first, second, third) if v is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return int(days) * 1440 + hours * 60 + minutes + seconds / 60
    if len(parts) == 3:  # HH:MM:SS
        return parts[0] * 60 + parts[1] + parts[2] / 60
    return parts[0] + (parts[1] / 60 if len(parts) == 2 else 0.0)  # MM[:SS]


class ClusterSpec(_Strict):
    """`[cluster]`: what array tasks ask for (--executor submitit); same-named options override.

    `--cluster local` uses time, gpus and array_parallelism; the other keys are SLURM's. The
    table is recorded in the run directory, and is not part of what a run measures: a run may
    be resumed with other settings."""

    partition: str | None = Field(
        None, description="the SLURM partition (comma-separated for several); --partition")
    time: float | str | None = Field(
        None, description="each array task's time limit: minutes, or a SLURM time "
                          f"({SLURM_TIME_FORMS}); --time [default: 4 x the longest task's "
                          "estimate, at least 60 minutes]")
    mem: float | None = Field(None, gt=0, description="GB of memory per array task; --mem")
    gpus: int | None = Field(None, ge=0, description="GPUs per array task; --gpus")
    account: str | None = Field(None, description="the SLURM account to charge; --account")
    task_minutes: float | None = Field(
        None, gt=0, description="minutes of estimated work per SLURM array task "
                                "[default: 10]; --task-minutes")
    array_parallelism: int | None = Field(
        None, ge=1, description="array tasks running at once (SLURM's %N); --cluster local: "
                                "the number of tasks [default: the cores]; --array-parallelism")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise ValueError(f"unknown key {key!r}"
                                     f"{estimators.did_you_mean(str(key), allowed)}; "
                                     f"allowed: {', '.join(allowed)}")
        return data

    @field_validator("partition", "account")
    @classmethod
    def _slurm_name(cls, v: str | None) -> str | None:
        if v is not None and not SLURM_NAME.match(v):
            raise ValueError("must be a SLURM name (letters, digits, '_', "
                             "'.', '-'; comma-separated for several)")
        return v

    @field_validator("time")
    @classmethod
    def _minutes(cls, v: float | str | None) -> float | None:
        if v is None:
            return None
        allowed = f"must be minutes > 0 or a SLURM time ({SLURM_TIME_FORMS})"
        try:
            minutes = slurm_minutes(v) if isinstance(v, str) else float(v)
        except ValueError:
            raise ValueError(allowed) from None
        if not minutes > 0:
            raise ValueError(allowed)
        return minutes


def apply_quick(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw suite with its `[quick]` overrides applied and mode = "quick" (stored so)."""
    quick = raw.get("quick") or {}
    out = dict(raw, mode="quick")
    if quick.get("seeds") is not None:
        out["seeds"] = quick["seeds"]
    for section in ("training", "metrics"):
        out[section] = {**raw.get(section, {}), **quick.get(section, {})}
    return out


class Suite(_Strict):
    # Required here; a suite file may omit it (`load_suite` sets the file name).
    name: str = Field(description="the suite's name (default: the file name without .toml)")
    description: str = Field("", description="one line shown in reports")
    mode: Literal["full", "quick"] = Field(
        "full", description="full, or quick when the [quick] overrides were applied (set by "
                            "--quick)")
    protocol: Literal["independent", "shared"] = Field(
        "independent", description="independent: each estimator trains its own model; shared: "
                                   "one estimator (train_with) trains and every estimator is "
                                   "measured at its checkpoints")
    train_with: str | None = Field(
        None, description="shared protocol: the label of the estimator that trains")
    train_num_samples: int | None = Field(
        None, ge=1, le=MAX_NUM_SAMPLES,
        description="shared protocol: S of the training estimator (default: each cell's S); "
                    "set it so that cells of every S are measured on one trajectory")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="one cell per seed")
    num_samples: list[int] = Field(default_factory=lambda: [1], min_length=1,
                                   description="numbers of samples S (one cell per S)")
    data: DataSpec = Field(DataSpec(), description="the [data] table")
    training: TrainingSpec = Field(TrainingSpec(), description="the [training] table")
    metrics: MetricsSpec = Field(MetricsSpec(), description="the [metrics] table")
    objectives: list[ObjectiveSpec] = Field(min_length=1,
                                            description="the [[objectives]] entries")
    estimators: list[EstimatorSpec] = Field(min_length=1,
                                            description="the [[estimators]] entries")
    claims: list[Claim] = Field(
        default_factory=list,
        description="the [[claims]] entries: published statements checked on every run")
    quick: QuickSpec | None = Field(
        None, description="the [quick] table: what `estibench run NAME --quick` overrides")
    cluster: ClusterSpec = Field(
        ClusterSpec(), description="the [cluster] table: what each array task asks for with "
                                   "--executor submitit (not part of what a run measures)")
    cell_timeout: float | None = Field(
        None, gt=0, le=MAX_CELL_TIMEOUT,
        description="seconds a cell may run before it is stopped and recorded as failed "
                    "(resume reruns it); default: 30 x its estimated time, at least 15 "
                    "minutes (not part of what a run measures)")
    # set by command-line overrides, never by a suite file
    left_out: LeftOut = Field(
        LeftOut(), description="the estimator and objective labels (and the suite's own steps) "
                               "that command-line overrides took out: claims naming them are "
                               "\"not run\" (set by --estimator, --objective, --steps)")

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        _unique("seeds", self.seeds)
        bad_seeds = [s for s in self.seeds if not 0 <= s < MAX_SEED]
        if bad_seeds:
            raise ValueError(f"seeds must be integers in [0, 2^32) (torch's generator keeps 32 "
                             f"bits of a seed), got {bad_seeds}")
        _check_num_samples(self.num_samples)
        steps = self.training.steps
        bad = [c for c in self.metrics.checkpoints if c != -1 and not 0 <= c <= steps]
        if bad:
            raise ValueError(f"metrics.checkpoints must be steps in [0, training.steps = "
                             f"{steps}] or -1 (the final step), got {bad}")
        for field, specs in (("objectives", self.objectives), ("estimators", self.estimators)):
            ids = [spec.id for spec in specs]
            for i, label in enumerate(ids):
                if (first := ids.index(label)) != i:
                    raise ValueError(
                        f"{field}[{first}] and {field}[{i}] have the same label {label!r} "
                        f"(labels must be unique, results are grouped by them); set `label` "
                        f"on one of them"
                    )
        labels = [e.id for e in self.estimators]
        if self.protocol == "shared":
            if self.train_with is None:
                raise ValueError("protocol 'shared' needs train_with = one of the estimator "
                                 f"labels: {', '.join(labels)}")
            _check_name("train_with estimator", self.train_with, labels)
        elif self.train_num_samples is not None:
            raise ValueError("train_num_samples needs protocol = \"shared\" (with the "
                             "independent protocol each estimator trains with its own S)")
        errors = [InitErrorDetails(type=PydanticCustomError("claim", message), loc=loc,
                                   input=value) for loc, message, value in errors_against(self)]
        if errors:  # raised as a ValidationError: each keeps its field path (claims.0.metric)
            raise ValidationError.from_exception_data("Suite", errors)
        return self

    def estimator(self, label: str) -> EstimatorSpec:
        return next(e for e in self.estimators if e.id == label)


def _label(name: str, options: dict[str, Any], factory: Any, named: bool = False) -> str:
    """name-value-value...: the options that differ from the factory's defaults, sorted by
    option name; a list reads as 512x256. named: name(option=value, ...) instead."""
    def plain(v: Any) -> Any:
        return tuple(v) if isinstance(v, (list, tuple)) else v

    def text(v: Any) -> str:
        return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    defaults = {k: p.default for k, p in inspect.signature(factory(name)).parameters.items()}
    changed = [(k, text(v)) for k, v in sorted(options.items())
               if plain(defaults.get(k)) != plain(v)]
    if named:
        return name + (f"({', '.join(f'{k}={v}' for k, v in changed)})" if changed else "")
    return "-".join([name, *(v for _, v in changed)])


def _check_num_samples(values: list[int]) -> None:
    if not values or not all(1 <= v <= MAX_NUM_SAMPLES for v in values):
        raise ValueError(f"num_samples must be a non-empty list of integers in [1, 2^20], "
                         f"got {values}")
    _unique("num_samples", values)


def _build(name: str, options: dict[str, Any], factory: Any, any_error: bool = False) -> None:
    """Construct once so bad options fail at load time with the library's own message.

    any_error: any exception is bad input (objectives: torch refusing a size). Otherwise only
    ValueError and TypeError are; an estimator plugin that raises something else fails its
    own cells instead (`estibench.benchmarks.harness.plan.expand`)."""
    try:
        factory(name, **options)
    except (ValueError, TypeError) as err:
        raise ValueError(str(err)) from None
    except Exception as err:
        if not any_error:
            return
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        raise ValueError(f"{name!r} cannot be built with options {options}: {last}") from None


def available_suites() -> list[str]:
    """Names of the suites shipped in `benchmarks/suites/`."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str | Path) -> Path:
    """A shipped suite's file by name, or the given path."""
    path = Path(name_or_path)
    if path.is_dir() and str(name_or_path) in available_suites():
        # a run directory named after a shipped suite (`--out smoke`) does not hide it
        return SUITES_DIR / f"{name_or_path}.toml"
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise SuiteError(f"suite {str(path)!r} is a directory; give a suite's .toml file")
        if not path.is_file():
            raise SuiteError(f"suite file {str(path)!r} does not exist")
        return path
    names = available_suites()
    if str(name_or_path) not in names:
        hint = estimators.did_you_mean(str(name_or_path), names)
        raise SuiteError(
            f"unknown suite {str(name_or_path)!r}{hint}; shipped suites: {', '.join(names)} "
            "(or give a path to a .toml file)"
        )
    return SUITES_DIR / f"{name_or_path}.toml"


def error_lines(err: ValidationError) -> list[str]:
    """One line per problem: the field's path, what is wrong, the value given."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines


def _format(err: ValidationError, source: str) -> str:
    return "\n".join([f"invalid suite {source}:", *(f"  {line}" for line in error_lines(err))])


def parse_suite(raw: dict[str, Any], source: str = "<dict>", quick: bool = False) -> Suite:
    """Validate a suite given as a dict (the parsed TOML); `quick` applies its `[quick]`."""
    if quick:
        if not raw.get("quick"):
            raise SuiteError(f"suite {source} has no [quick] table: it has no quick mode")
        raw = apply_quick(raw)
    try:
        return Suite.model_validate(raw)
    except ValidationError as err:
        raise SuiteError(_format(err, source)) from None


def load_suite(name_or_path: str | Path | Suite, quick: bool = False) -> Suite:
    """Load and validate a suite by shipped name, by path, or pass a `Suite` through;
    `quick` applies the suite's `[quick]` overrides."""
    if isinstance(name_or_path, Suite):
        if quick:
            return parse_suite(name_or_path.model_dump(), name_or_path.name, quick=True)
        return name_or_path
    path = suite_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM is not TOML
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not UTF-8 text: {err}") from None
    raw.setdefault("name", path.stem)
    if "left_out" in raw:  # it would let claims name labels the suite does not define
        raise SuiteError(f"suite {str(path)!r}: left_out = {raw['left_out']!r} is recorded by "
                         "command-line overrides (--estimator, --objective, --steps); a suite "
                         "file cannot set it: remove it")
    return parse_suite(raw, repr(str(path)), quick=quick)
