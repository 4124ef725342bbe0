"""The suite reference, generated from the pydantic models of `estibench.benchmarks.suites.schema`.

    print(reference_markdown())   # what `estibench suite schema` prints; docs/suite-reference.md
    suite_json_schema()           # what `estibench suite schema --json` prints

Everything is read from the models: types, defaults, constraints, allowed values and each key's
one-line description (its `Field(description=...)`; a test checks every field has one).
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
    ("[cluster]", s.ClusterSpec),
)


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


# Keys a suite file may omit although the model requires them: loading fills them in.
FILLED_BY_LOADING = {(s.Suite, "name"): "the file's name"}


def _default(model: type[BaseModel], name: str, field: Any) -> str:
    if (model, name) in FILLED_BY_LOADING:
        return FILLED_BY_LOADING[model, name]
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
        lines += ["", f"## {section}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [doc.splitlines()[0], ""]
        lines += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            default = _default(model, name, field)
            lines.append(f"| `{name}` | {type_text(field.annotation)} | {default} | "
                         f"{_constraints(field)} | {field.description or ''} |")
    return "\n".join(lines) + "\n"


def suite_json_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file: the `Suite` model's, with the descriptions, except that
    `name` is not required (a file may omit it: `load_suite` takes the file name)."""
    schema = s.Suite.model_json_schema()
    filled = {name for model, name in FILLED_BY_LOADING if model is s.Suite}
    schema["required"] = [key for key in schema["required"] if key not in filled]
    return schema
