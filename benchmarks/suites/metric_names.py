"""The metric names a suite records, derived from the measurement results' own fields, so a
claim naming a metric that no cell of the suite will ever record fails at load time."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.metrics import ThroughputResult, gradient_stats

# Scalars recorded outside the result classes (benchmarks/harness/cell.py).
_TRAIN = ("objective", "seconds")
_BOUNDS = ("elbo", "log_marginal", "log_marginal_exact", "gap")


def _scalar_fields(cls: type, numeric: tuple[str, ...]) -> list[str]:
    """Fields annotated with a scalar type; a (lo, hi) tuple field yields name_lo, name_hi."""
    names = []
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        if "tuple" in kind:
            names += [f"{f.name}_lo", f"{f.name}_hi"]
        elif any(kind.startswith(n) for n in numeric):
            names.append(f.name)
    return names


@functools.lru_cache(maxsize=1)
def gradient_statistics() -> tuple[str, ...]:
    """The per-checkpoint gradient statistics (`grad/<wrt>/<name>`): the keys of a real
    measurement's `as_dict` where the exact gradient is known (the bias fields included)."""
    toy = objectives.get("gaussian_toy")
    return tuple(gradient_stats(toy, estimators.get("pathwise"), None, replicas=3).as_dict())


def metric_names(suite: Any) -> list[str]:
    """Every metric name the cells of `suite` can record (toys and VAEs together)."""
    m = suite.metrics
    names = [f"grad/{wrt}/{stat}" for wrt in m.wrt for stat in gradient_statistics()]
    names += [f"train/{n}" for n in _TRAIN]
    names.append("test/exact_objective")
    if m.bounds:
        names += [f"test/{n}" for n in _BOUNDS] + [f"test/iwae_{k}" for k in m.iwae_ks]
    if m.throughput:
        names += [f"time/{n}" for n in _scalar_fields(ThroughputResult, ("float", "int"))]
        names.append("efficiency/variance_x_time")
    return names


def interval_metrics(metric: str) -> tuple[str, str, bool] | None:
    """The rows holding `metric`'s own 95% interval: (lo, hi, log10) where log10 says the
    interval is of 10**metric (log10_total_variance uses the total variance's interval)."""
    head, _, stat = metric.rpartition("/")
    if stat.startswith("log10_"):
        base = f"{head}/{stat.removeprefix('log10_')}"
        return f"{base}_ci_lo", f"{base}_ci_hi", True
    return f"{metric}_ci_lo", f"{metric}_ci_hi", False
