"""The suite reference, generated from the pydantic models of `estibench.benchmarks.suites.schema`.

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

from estibench.benchmarks.suites import schema as s
from estibench.benchmarks.suites.claims import CellRef, Claim

# (TOML table, model), in the order a suite file reads.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", s.Suite),
    ("[data]", s.DataSpec),
    ("[training]", s.TrainingSpec),
    ("[training.temperature]", s.TemperatureSchedule),
    ("[metrics]", s.MetricsSpec),
    ("[[objectives]]", s.ObjectiveSpec),
    ("[[estimators]]", s.EstimatorSpec),
    ("[[claims]]", Claim),
    ("[claims.left], [claims.right], [[claims.cells]]", CellRef),
    ("[quick]", s.QuickSpec),
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
        "claims": "the [[claims]] entries: published statements checked on every run",
        "quick": "the [quick] table: what `estibench run NAME --quick` overrides",
        "mode": "full, or quick when the [quick] overrides were applied (set by --quick)",
        "left_out": "the estimator and objective labels (and the suite's own steps) that "
                    "command-line overrides took out: claims naming them are \"not run\" "
                    "(set by --estimator, --objective, --steps)",
    },
    "Claim": {
        "statement": "the claim in words, as the report prints it",
        "source": "where it is published (paper, table or figure)",
        "metric": "the metric compared (a stored metric name, e.g. grad/encoder/snr_norm)",
        "step": "final, every (each checkpoint) or one checkpoint",
        "objectives": "repeat the claim for each of these objective labels (cells naming none)",
        "left": "compare / value claims: the first cell",
        "relation": "<, > or == (== needs tolerance)",
        "right": "compare claims: the second cell",
        "value": "value claims: the number the metric is compared with",
        "tolerance": "== claims: the relative tolerance",
        "cells": "trend claims: the cells in order",
        "direction": "trend claims: increasing or decreasing along cells",
        "noise": "auto (seeds when there are several, else the metric's interval), seeds, or "
                 "interval",
        "alpha": "the family-wise level over the claim's parts",
    },
    "CellRef": {
        "objective": "objective label (default: each of the claim's objectives)",
        "estimator": "estimator label",
        "num_samples": "S, when the estimator runs with several",
        "step": "this cell's step instead of the claim's",
    },
    "QuickSpec": {
        "seeds": "the seeds of a quick run",
        "training": "[training] keys overridden in a quick run",
        "metrics": "[metrics] keys overridden in a quick run",
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
        "optimizer": "optimizer of the model's parameters (an estimator's own have theirs: "
                     "[[estimators]] optimizer)",
        "learning_rate": "optimizer step size",
        "log_every": "record the training objective every this many steps",
        "temperature": "the [training.temperature] table",
        "compile": "compile the training step's forward with torch.compile (on CPU it helps at "
                   "small batch only sometimes, and costs seconds to minutes per configuration)",
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
        "optional": "true: a name that is not registered (not implemented yet, plugin missing) "
                    "is recorded as not applicable and its claims as not run",
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
        "Generated from the pydantic models in `benchmarks/suites/schema.py` by `estibench suite "
        "schema`; `tests/cli/test_discover.py` keeps this page in sync. Unknown keys are "
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
