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

import estimators
from benchmarks import data as datasets
from benchmarks import objectives
from benchmarks.claims import Claim, errors_against

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
    # optional: an estimator that may not be registered (not implemented yet, plugin missing):
    # then its cells are recorded as not applicable, with the reason, and its claims not run.
    optional: bool = False
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    num_samples: list[int] | None = None  # overrides the suite's list for this estimator

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
        if v is not None and (not v or min(v) < 1):
            raise ValueError(f"num_samples must be a non-empty list of integers >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _buildable(self) -> EstimatorSpec:
        if self.missing is None:
            _build(self.name, self.options, estimators.get)
        return self

    @property
    def id(self) -> str:
        """The label results use: `label`, else the canonical name (aliases resolved) with its
        non-default options (reinforce-loo); an unregistered optional estimator: its name and
        option values."""
        if self.label:
            return self.label
        if self.missing is not None:
            return "-".join([self.name, *(str(v) for _, v in sorted(self.options.items()))])
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


class QuickSpec(_Strict):
    """`[quick]`: what `estibench run NAME --quick` overrides (fewer steps, replicas, seeds)."""

    seeds: list[int] | None = Field(None, min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("training", "metrics")
    @classmethod
    def _partial(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # every key and value as strict as in the full sections
        {"training": TrainingSpec, "metrics": MetricsSpec}[info.field_name].model_validate(v)
        return v


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
    name: str
    description: str = ""
    mode: Literal["full", "quick"] = "full"
    protocol: Literal["independent", "shared"] = "independent"
    train_with: str | None = None  # shared protocol: the estimator label that trains
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    num_samples: list[int] = Field(default_factory=lambda: [1], min_length=1)
    data: DataSpec = DataSpec()
    training: TrainingSpec = TrainingSpec()
    metrics: MetricsSpec = MetricsSpec()
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    estimators: list[EstimatorSpec] = Field(min_length=1)
    claims: list[Claim] = Field(default_factory=list)
    quick: QuickSpec | None = None

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
        errors = [InitErrorDetails(type=PydanticCustomError("claim", message), loc=loc,
                                   input=value) for loc, message, value in errors_against(self)]
        if errors:  # raised as a ValidationError: each keeps its field path (claims.0.metric)
            raise ValidationError.from_exception_data("Suite", errors)
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
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise SuiteError(f"suite {str(path)!r} is not UTF-8 text: {err}") from None
    raw.setdefault("name", path.stem)
    return parse_suite(raw, repr(str(path)), quick=quick)
