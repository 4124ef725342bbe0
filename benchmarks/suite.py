"""Suites: a TOML file listing data, objectives, estimators, seeds, training and metric settings.

Validated with pydantic: unknown keys and bad values fail with the field path, the value and
what is allowed; misspelt names get a "did you mean". Shipped suites live in
`benchmarks/suites/*.toml` and are found by name (`load_suite("standard")`).
"""

from __future__ import annotations

import inspect
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
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        _build(self.name, self.options, objectives.get)
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
        if v is not None and (not v or min(v) < 1):
            raise ValueError(f"num_samples must be a non-empty list of integers >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _buildable(self) -> EstimatorSpec:
        _build(self.name, self.options, estimators.get)
        return self

    @property
    def id(self) -> str:
        """The label results use: `label`, else the canonical name (aliases resolved) with its
        non-default options (reinforce-loo)."""
        if self.label:
            return self.label
        name, options = estimators.registry.resolve(self.name, self.options)  # u2g -> disarm
        signature = inspect.signature(estimators.registry.factory(name))
        defaults = {name: p.default for name, p in signature.parameters.items()}
        changed = [str(v) for k, v in sorted(options.items()) if defaults.get(k) != v]
        return "-".join([name, *changed])


class TemperatureSchedule(_Strict):
    """tau(step) = max(minimum, initial * exp(-rate * step)) (Jang et al. 2017)."""

    initial: float = Field(1.0, gt=0)
    minimum: float = Field(0.5, gt=0)
    rate: float = Field(0.0, ge=0)


class TrainingSpec(_Strict):
    steps: int = Field(200, ge=0)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    log_every: int = Field(10, ge=1)
    temperature: TemperatureSchedule = TemperatureSchedule()
    compile: bool = False  # the training step's forward through torch.compile (cell.train)


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
        labels = [e.id for e in self.estimators]
        if len(set(labels)) != len(labels):
            raise ValueError(f"estimator labels must be unique, got {labels}; set `label`")
        if self.protocol == "shared":
            if self.train_with is None:
                raise ValueError("protocol 'shared' needs train_with = one of the estimator "
                                 f"labels: {', '.join(labels)}")
            _check_name("train_with estimator", self.train_with, labels)
        if min(self.num_samples) < 1:
            raise ValueError(f"num_samples must be integers >= 1, got {self.num_samples}")
        return self

    def estimator(self, label: str) -> EstimatorSpec:
        return next(e for e in self.estimators if e.id == label)


def _build(name: str, options: dict[str, Any], factory: Any) -> None:
    """Construct once so bad options fail at load time with the library's own message."""
    try:
        factory(name, **options)
    except (ValueError, TypeError) as err:
        raise ValueError(str(err)) from None


def available_suites() -> list[str]:
    """Names of the suites shipped in `benchmarks/suites/`."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name_or_path: str | Path) -> Path:
    """A shipped suite's file by name, or the given path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
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
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not UTF-8 text: {err}") from None
    raw.setdefault("name", path.stem)
    return parse_suite(raw, repr(str(path)))
