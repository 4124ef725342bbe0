"""estibench: benchmark Monte Carlo gradient estimators on shared objectives.

    import estibench
    est = estibench.get("reinforce", baseline="loo")     # an estimator, as estimators.get
    result = estibench.run("smoke", out="runs/smoke")   # a suite run, as `estibench run`
    estibench.estimators.available(), estibench.objectives.available()   # the registries
    estibench.Model(posterior=..., f=..., encoder=...)   # your own model (docs/your-model.md)

The library and the harness live in the subpackages, from the bottom up:
`estibench.estimators` (the estimators, torch only), `estibench.benchmarks` (problems, metrics,
suites, results, harness, claims, regression tooling) and `estibench.reports`. This root stays
thin: importing `estibench.estimators` imports this module first, so the harness is imported
only when `run` is first used.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("estibench")
except metadata.PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

# name -> the module that defines it, imported on first use
_PUBLIC = {
    "run": "estibench.api", "RunResult": "estibench.api", "recommend": "estibench.api",
    "get": "estibench.estimators", "available": "estibench.estimators",
    "register": "estibench.estimators", "Estimator": "estibench.estimators",
    "EstimatorOutput": "estibench.estimators",
    "estimators": "estibench.estimators",
    "objectives": "estibench.benchmarks.objectives",
    "Model": "estibench.benchmarks.objectives",
    "reports": "estibench.reports",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'estibench' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name])
    value = module if module.__name__.endswith(f".{name}") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = ["__version__", *sorted(_PUBLIC)]
