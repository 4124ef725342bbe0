"""Suites: a TOML file listing data, objectives, estimators, seeds, training and metric settings.

Validated with pydantic: unknown keys and bad values fail with the field path, the value and
what is allowed; misspelt names get a "did you mean". Shipped suites live in
`benchmarks/suites/*.toml` and are found by name (`load_suite("standard")`).
"""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import estimators
from benchmarks import data as datasets
from benchmarks import objectives

SUITES_DIR = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite that cannot be loaded: the message names the field, the value and what is allowed."""


class _Strict(BaseModel):
    # No inf or NaN anywhere: a learning rate or temperature of inf is accepted, then measures
    # nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_SEED = 2**40  # cells derive further seeds from it (seed * 100_003 + step) within int64
MAX_SIZE = 1_000_000  # a layer, latent or toy dimension; beyond it nothing fits in memory
MAX_NUM_SAMPLES = 2**20
MIN_TEMPERATURE = 1e-6  # below it logits / tau overflow in float32
# Objective options that are sizes: positive integers (hidden: one or a list of them).
SIZE_OPTIONS = ("input_dim", "latent_dim", "variables", "categories", "hidden", "dims")


def _unique(field: str, values: list[Any]) -> None:
    repeated = sorted({repr(v) for v in values if values.count(v) > 1})
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
    name: str = "digits"
    binarization: Literal["fixed", "dynamic"] = "fixed"
    threshold: float = Field(0.5, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    path: str | None = None  # full MNIST: a directory of IDX files or an .npz
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name("dataset", v, datasets.available())


class ObjectiveSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name("objective", v, objectives.available())

    @model_validator(mode="after")
    def _buildable(self) -> ObjectiveSpec:
        _check_sizes(self.options)
        _build(self.name, self.options, objectives.get, any_error=True)
        return self

    @property
    def id(self) -> str:
        return self.label or self.name


class EstimatorSpec(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    num_samples: list[int] | None = None  # overrides the suite's list for this estimator

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_name("estimator", v, estimators.available())

    @field_validator("num_samples")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            _check_num_samples(v)
        return v

    @model_validator(mode="after")
    def _buildable(self) -> EstimatorSpec:
        _build(self.name, self.options, estimators.get)
        return self

    @property
    def id(self) -> str:
        """The label results use: `label`, else the name with its options (reinforce-loo)."""
        if self.label:
            return self.label
        signature = inspect.signature(estimators.registry.factory(self.name))
        defaults = {name: p.default for name, p in signature.parameters.items()}
        changed = [str(v) for k, v in sorted(self.options.items()) if defaults.get(k) != v]
        return "-".join([self.name, *changed])


class TemperatureSchedule(_Strict):
    """tau(step) = max(minimum, initial * exp(-rate * step)) (Jang et al. 2017)."""

    initial: float = Field(1.0, ge=MIN_TEMPERATURE)
    minimum: float = Field(0.5, ge=MIN_TEMPERATURE)
    rate: float = Field(0.0, ge=0)


class TrainingSpec(_Strict):
    steps: int = Field(200, ge=0)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    log_every: int = Field(10, ge=1)
    temperature: TemperatureSchedule = TemperatureSchedule()


class MetricsSpec(_Strict):
    checkpoints: list[int] = Field(default_factory=lambda: [0, -1])  # -1: the final step
    replicas: int = Field(64, ge=2)
    eval_batch_size: int = Field(32, ge=1)
    wrt: list[Literal["distribution", "encoder", "decoder"]] = Field(
        default_factory=lambda: ["distribution", "encoder"]
    )
    bounds: bool = True
    bounds_examples: int = Field(200, ge=1)
    iwae_ks: list[int] = Field(default_factory=lambda: [1, 10, 100])
    throughput: bool = True
    throughput_min_run_time: float = Field(0.1, gt=0)

    @field_validator("iwae_ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1:
            raise ValueError(f"iwae_ks must be a non-empty list of integers >= 1, got {v}")
        return sorted(set(v))


class Suite(_Strict):
    name: str
    description: str = ""
    protocol: Literal["independent", "shared"] = "independent"
    train_with: str | None = None  # shared protocol: the estimator label that trains
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    num_samples: list[int] = Field(default_factory=lambda: [1], min_length=1)
    data: DataSpec = DataSpec()
    training: TrainingSpec = TrainingSpec()
    metrics: MetricsSpec = MetricsSpec()
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    estimators: list[EstimatorSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        _unique("seeds", self.seeds)
        bad_seeds = [s for s in self.seeds if not 0 <= s < MAX_SEED]
        if bad_seeds:
            raise ValueError(f"seeds must be integers in [0, 2^40), got {bad_seeds}")
        _check_num_samples(self.num_samples)
        _unique("objectives (name and options)",
                [(o.name, o.options, o.label) for o in self.objectives])
        steps = self.training.steps
        bad = [c for c in self.metrics.checkpoints if c != -1 and not 0 <= c <= steps]
        if bad:
            raise ValueError(f"metrics.checkpoints must be steps in [0, training.steps = "
                             f"{steps}] or -1 (the final step), got {bad}")
        labels = [e.id for e in self.estimators]
        if len(set(labels)) != len(labels):
            raise ValueError(f"estimator labels must be unique, got {labels}; set `label`")
        if self.protocol == "shared":
            if self.train_with is None:
                raise ValueError("protocol 'shared' needs train_with = one of the estimator "
                                 f"labels: {', '.join(labels)}")
            _check_name("train_with estimator", self.train_with, labels)
        return self

    def estimator(self, label: str) -> EstimatorSpec:
        return next(e for e in self.estimators if e.id == label)


def _check_num_samples(values: list[int]) -> None:
    if not values or not all(1 <= v <= MAX_NUM_SAMPLES for v in values):
        raise ValueError(f"num_samples must be a non-empty list of integers in [1, 2^20], "
                         f"got {values}")
    _unique("num_samples", values)


def _build(name: str, options: dict[str, Any], factory: Any, any_error: bool = False) -> None:
    """Construct once so bad options fail at load time with the library's own message.

    any_error: any exception is bad input (objectives: torch refusing a size). Otherwise only
    ValueError and TypeError are; an estimator plugin that raises something else fails its
    own cells instead (`benchmarks.runner.expand`)."""
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


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid suite {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def parse_suite(raw: dict[str, Any], source: str = "<dict>") -> Suite:
    """Validate a suite given as a dict (the parsed TOML)."""
    try:
        return Suite.model_validate(raw)
    except ValidationError as err:
        raise SuiteError(_format(err, source)) from None


def load_suite(name_or_path: str | Path | Suite) -> Suite:
    """Load and validate a suite by shipped name, by path, or pass a `Suite` through."""
    if isinstance(name_or_path, Suite):
        return name_or_path
    path = suite_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM is not TOML
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not UTF-8 text: {err}") from None
    raw.setdefault("name", path.stem)
    return parse_suite(raw, repr(str(path)))
