"""A suite (the dict of its stored suite.json) written back as TOML, as a user would write it.

Tables and arrays of tables for the nested parts, `key = value` for the rest; only the types a
suite holds (strings, numbers, booleans, lists, tables). `None` values are left out (TOML has
no null; a missing key means the default).
"""

from __future__ import annotations

import json
import math
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _inline(key: str, value: Any) -> bool:
    """Written as `key = value`: everything but sections; estimator and objective options stay
    inline tables, as suites write them."""
    if isinstance(value, dict):
        return key == "options" or not value
    return not _is_table_list(value)


def _body(table: dict[str, Any], path: str) -> list[str]:
    # Plain keys first: after a [section] header every key belongs to that section.
    lines = [f"{_key(k)} = {_value(v)}" for k, v in table.items()
             if v is not None and _inline(k, v)]
    for k, v in table.items():
        name = f"{path}.{_key(k)}" if path else _key(k)
        if isinstance(v, dict) and not _inline(k, v):
            lines += ["", f"[{name}]", *_body(v, name)]
        elif _is_table_list(v):
            for item in v:
                lines += ["", f"[[{name}]]", *_body(item, name)]
    return lines


def to_toml(suite: dict[str, Any]) -> str:
    """The suite as TOML text (parses back to the same values, `None`s omitted)."""
    return "\n".join(_body(suite, "")).strip() + "\n"
