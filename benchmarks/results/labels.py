"""How stored labels are shown on screen and in reports; the stored label stays the cell's
identity (claims, `--objective`, `--estimator` and resume use it).

- An objective's automatic label (categorical_vae-4-4, option values in option order) names
  its options: categorical_vae(categories=4, variables=4).
- An estimator's bare name beside its variants names the defaults they change: reinforce
  beside reinforce-loo is reinforce(baseline=none).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

UNKNOWN = "(unknown)"
# C0 and C1 control characters but newline and tab: a label or an error that carries terminal
# escape sequences must not recolour, move or clear the terminal of whoever reads it
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """User or exception text without control characters (the terminal and report.md)."""
    return _CONTROL.sub("", str(text))


def display_objective(config: Mapping[str, Any], explicit: frozenset[str] = frozenset()) -> str:
    """The objective of a cell's config as people read it; labels in `explicit` (set by the
    suite) are kept, and so is any label that is not the objective's automatic one."""
    label = str(config.get("objective") or UNKNOWN)
    reference = str(config.get("objective_name") or "")
    if not reference or label == UNKNOWN or label in explicit:
        return label
    options = json.dumps(config.get("objective_options") or {}, sort_keys=True, default=str)
    factory = reference if ":" in reference else ""
    return _display(label, "" if factory else reference, factory, options)


@functools.lru_cache(maxsize=256)
def _display(label: str, name: str, factory: str, options: str) -> str:
    from estibench.benchmarks.suites.schema import ObjectiveSpec

    try:
        key = {"factory": factory} if factory else {"name": name}
        spec = ObjectiveSpec(**key, options=json.loads(options))
        return spec.display if spec.id == label else label
    except Exception:  # an objective this installation cannot build: its stored label
        return label


def display_estimators(configs: Iterable[Mapping[str, Any]],
                       explicit: frozenset[str] = frozenset()) -> dict[str, str]:
    """Stored estimator label -> how people read it, for the cells of one run or several.

    A label that is its estimator's bare name (every option at its default), beside variants
    of that estimator that set options, names the defaults those variants change:
    `reinforce` beside `reinforce-loo` reads `reinforce(baseline=none)`. Every other label,
    and a label the suite set (`explicit`), is shown as it is."""
    variants: dict[str, dict[str, dict[str, Any]]] = {}  # name -> label -> options
    for config in configs:
        label, name = config.get("estimator"), config.get("estimator_name")
        if isinstance(label, str) and isinstance(name, str):
            options = config.get("estimator_options")
            variants.setdefault(name, {})[label] = options if isinstance(options, dict) else {}
    shown: dict[str, str] = {}
    for name, labels in variants.items():
        for label in labels:
            shown[label] = label
        if name not in labels or name in explicit or len(labels) < 2:
            continue
        defaults = _defaults(name)
        changed = sorted({k for options in labels.values() for k, v in options.items()
                          if k in defaults and v != defaults[k]})
        if changed:
            own = labels[name]
            shown[name] = name + "(" + ", ".join(
                f"{k}={own.get(k, defaults[k])}" for k in changed) + ")"
    return shown


@functools.lru_cache(maxsize=64)
def _defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of an estimator's factory ({} where it cannot be found)."""
    from estibench import estimators

    try:
        factory = estimators.registry.factory(name)
        return {k: p.default for k, p in inspect.signature(factory).parameters.items()
                if p.default is not inspect.Parameter.empty}
    except Exception:  # an estimator this installation does not have: labels as stored
        return {}
