"""The suite reference, generated from the pydantic models of `benchmarks.suite`.

    print(reference_markdown())   # what `estibench suite schema` prints; docs/suite-reference.md

Types, defaults, constraints and allowed values are read from the models; only the one-line
descriptions live here, and a test checks they name exactly the models' fields.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from benchmarks import suite as s

# (TOML table, model), in the order a suite file reads.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", s.Suite),
    ("[data]", s.DataSpec),
    ("[training]", s.TrainingSpec),
    ("[training.temperature]", s.TemperatureSchedule),
    ("[metrics]", s.MetricsSpec),
    ("[[objectives]]", s.ObjectiveSpec),
    ("[[estimators]]", s.EstimatorSpec),
)

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Suite": {
        "name": "the suite's name (default: the file name without .toml)",
        "description": "one line shown in reports",
        "protocol": "independent: each estimator trains its own model; shared: one estimator "
                    "(train_with) trains and every estimator is measured at its checkpoints",
        "train_with": "shared protocol: the label of the estimator that trains",
        "seeds": "one cell per seed",
        "num_samples": "numbers of samples S (one cell per S)",
        "data": "the [data] table",
        "training": "the [training] table",
        "metrics": "the [metrics] table",
        "objectives": "the [[objectives]] entries",
        "estimators": "the [[estimators]] entries",
    },
    "DataSpec": {
        "name": "dataset (`estibench list datasets`)",
        "binarization": "fixed: threshold once; dynamic: resample pixels each epoch",
        "threshold": "pixel threshold of fixed binarization",
        "test_fraction": "share of examples held out",
        "split_seed": "seed of the train/test split",
        "path": "data file or directory (full MNIST: IDX files or an .npz)",
        "options": "extra keyword options of the dataset",
    },
    "TrainingSpec": {
        "steps": "training steps per cell",
        "batch_size": "training batch size",
        "optimizer": "optimizer over the model's and the estimator's parameters",
        "learning_rate": "optimizer step size",
        "log_every": "record the training objective every this many steps",
        "temperature": "the [training.temperature] table",
    },
    "TemperatureSchedule": {
        "initial": "temperature at step 0",
        "minimum": "the temperature never goes below this",
        "rate": "tau(step) = max(minimum, initial * exp(-rate * step))",
    },
    "MetricsSpec": {
        "checkpoints": "steps at which gradients and bounds are measured (-1: the final step)",
        "replicas": "independent gradient estimates M per checkpoint, or \"auto\": draw them in "
                    "chunks until the total variance's relative standard error is at most "
                    "replicas_target",
        "replicas_target": "with replicas = \"auto\": the relative standard error of the total "
                           "variance to reach",
        "replicas_min": "with replicas = \"auto\": the fewest replicas drawn",
        "replicas_max": "with replicas = \"auto\": the most replicas drawn (the precision may "
                        "then fall short: the report marks it)",
        "eval_batch_size": "examples in the fixed batch the gradient statistics use",
        "wrt": "parameter groups whose gradient statistics are recorded",
        "bounds": "measure ELBO, IWAE-k and log p(x) on held-out data",
        "bounds_examples": "held-out examples for the bounds",
        "iwae_ks": "the k of each IWAE-k bound",
        "throughput": "time the estimator (per estimate, per step, the floor)",
        "throughput_min_run_time": "seconds of timing per measured function",
    },
    "ObjectiveSpec": {
        "name": "objective (`estibench list objectives`)",
        "options": "keyword options of the objective",
        "label": "the name results use (default: the objective's name)",
    },
    "EstimatorSpec": {
        "name": "estimator (`estibench list estimators`)",
        "options": "keyword options of the estimator",
        "label": "the name results use (default: the name and its non-default options)",
        "num_samples": "numbers of samples for this estimator (overrides the suite's)",
        "optimizer": "the optimizer of the estimator's own parameters (a baseline network, a "
                     "control variate), trained from its aux_loss alone",
        "learning_rate": "their learning rate (default: the estimator's, from its paper)",
    },
}


def type_text(annotation: Any) -> str:
    """A TOML reader's name for an annotation: Literal values, lists, optional."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    unions = (typing.Union, types.UnionType)
    if origin is typing.Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return "table"
    if origin in unions:
        shown = [type_text(a) for a in args if a is not type(None)]
        optional = " (optional)" if type(None) in args else ""
        return " or ".join(shown) + optional
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).replace("'", '"')


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "length >="))


def _constraints(field: Any) -> str:
    found = []
    for item in field.metadata:
        for attribute, symbol in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{symbol} {value}")
    return ", ".join(found)


def reference_markdown() -> str:
    """The whole reference as Markdown (a table per TOML section)."""
    lines = [
        "# Suite reference",
        "",
        "Generated from the pydantic models in `benchmarks/suite.py` by `estibench suite "
        "schema`; `tests/test_suite_reference.py` keeps this page in sync. Unknown keys are "
        "errors. `estibench suite show NAME` prints a shipped suite to start from.",
    ]
    for section, model in SECTIONS:
        descriptions = DESCRIPTIONS[model.__name__]
        lines += ["", f"## {section}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [doc.splitlines()[0], ""]
        lines += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            lines.append(f"| `{name}` | {type_text(field.annotation)} | {_default(field)} | "
                         f"{_constraints(field)} | {descriptions.get(name, '')} |")
    return "\n".join(lines) + "\n"
