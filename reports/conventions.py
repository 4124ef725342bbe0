"""Conventions said out loud: per (objective, estimator[, S]) what ran, read from the cells'
configs and metrics, never assumed.

- KL: "analytic" (closed form, the estimator sees log p(x|z) only), "sampled" (also named k1:
  log p(z) - log q(z) at the estimator's samples, with the densities the estimator gives them:
  Concrete densities at the relaxed sample for estimators that relax, `Estimator.relax`), or
  the Monte Carlo estimators k2, k3 and k3 with its score-function correction
  (`objectives.kl`); none for toys.
- direct term: whether the term grad log q(z) (z fixed) is kept in a sampled KL (zero-mean for
  k1); from the cell's estimator options, else the estimator's default. It has no effect with
  an analytic KL; k3_unbiased keeps it whatever the estimator's setting.
- S, M: the samples per estimate and the replicas per gradient measurement (every checkpoint
  and parameter group of the group's cells).
- temperature: the cell config's "temperature" (a number, or a schedule as a dict) where the
  runner records it; "not recorded" for estimators with a temperature in runs that predate it.
- bound: what the objective is, the ELBO or the IWAE-S bound (the cell config's "bound").
- samples: "q", or what else f saw: an estimator whose `samples_from_q` is False (st_gumbel with
  a forward temperature other than 1) samples a tempered distribution, and its value and
  gradient are of the expectation under that distribution.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pandas as pd

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.objectives import LatentVariableModel
from estibench.reports.bias import replicas_text

COLUMNS = ("objective", "estimator", "S", "M", "bound", "KL", "direct term", "temperature",
           "samples", "statistics")


@functools.lru_cache(maxsize=256)
def _estimator(name: str, options_json: str) -> estimators.Estimator | None:
    try:
        return estimators.get(name, **json.loads(options_json))
    except Exception:  # noqa: BLE001 - a plugin not installed here: say "unknown"
        return None


@functools.lru_cache(maxsize=64)
def _is_model(name: str, options_json: str) -> bool | None:
    try:
        objective = objectives.load_objective(name, **json.loads(options_json))
        return isinstance(objective, LatentVariableModel)
    except Exception:  # noqa: BLE001 - an objective this installation cannot build
        return None


def _json(value: Any) -> str:
    return json.dumps(value or {}, sort_keys=True)


def kl_text(config: dict[str, Any]) -> str:
    model = _is_model(str(config.get("objective_name")), _json(config.get("objective_options")))
    if model is False:
        return "– (toy, no KL)"
    kl = config.get("kl") or "analytic"
    if kl == "analytic":
        return "analytic (closed form)"
    name = _SAMPLED_KL.get(kl, str(kl))
    est = _estimator(str(config.get("estimator_name")), _json(config.get("estimator_options")))
    if est is None:
        return name
    if type(est).relax is not estimators.Estimator.relax:
        return f"{name}: Concrete densities at the relaxed sample"
    return f"{name}: densities at the sample"


_SAMPLED_KL = {  # how each Monte Carlo estimator of the KL is named in the conventions table
    "sampled": "sampled",
    "k1": "sampled (k1)",
    "k2": "k2 = (log r)^2 / 2",
    "k3": "k3 = r - 1 - log r",
    "k3_unbiased": "k3 = r - 1 - log r, score-corrected",
}


def direct_term_text(config: dict[str, Any]) -> str:
    options = config.get("estimator_options") or {}
    if "direct_term" in options:
        kept = bool(options["direct_term"])
    else:
        est = _estimator(str(config.get("estimator_name")), _json(options))
        if est is None:
            return "unknown"
        kept = bool(est.direct_term)
    kl = config.get("kl") or "analytic"
    if kl == "k3_unbiased":
        return "kept (k3_unbiased)"
    text = "kept" if kept else "dropped"
    return text if kl != "analytic" else f"{text} (no effect: no sampled KL)"


def temperature_text(config: dict[str, Any]) -> str:
    if "temperature" not in config:
        est = _estimator(str(config.get("estimator_name")), _json(config.get("estimator_options")))
        return "not recorded" if est is not None and hasattr(est, "temperature") else "–"
    value = config["temperature"]
    if value is None:
        return "–"
    if isinstance(value, dict):
        if {"initial", "minimum", "rate"} <= set(value):
            return (f"schedule max({value['minimum']:g}, {value['initial']:g} "
                    f"exp(-{value['rate']:g} step))")
        return "schedule " + json.dumps(value, sort_keys=True)
    return f"{float(value):g}"


def bound_text(config: dict[str, Any]) -> str:
    model = _is_model(str(config.get("objective_name")), _json(config.get("objective_options")))
    if model is False:
        return "– (toy)"
    return "IWAE-S" if config.get("bound") == "iwae" else "ELBO"


def samples_text(config: dict[str, Any]) -> str:
    est = _estimator(str(config.get("estimator_name")), _json(config.get("estimator_options")))
    if est is None or getattr(est, "samples_from_q", True):
        return "q"
    tau = getattr(est, "forward_temperature", None)
    return (f"not q: softmax(logits / {tau:g}) (forward temperature)" if tau is not None
            else "not q")


# grad/<wrt>/vectorized: how the gradient statistics' replicas were computed
STATISTICS = {1.0: "vectorized",
              0.0: "loop (the estimator draws its own random numbers; slower)"}


def conventions(cells: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (objective, estimator, S) of the ok cells, with COLUMNS; a group whose cells
    differ in a convention lists every value."""
    ok = cells[cells["status"] == "ok"]
    replicas = frame[frame["metric"].str.fullmatch(r"grad/[a-z]+/replicas", na=False)]
    vectorized = frame[frame["metric"].str.fullmatch(r"grad/[a-z]+/vectorized", na=False)]
    rows = []
    for (objective, estimator, samples), group in ok.groupby(
            ["objective", "estimator", "num_samples"], sort=True, dropna=False):
        configs = list(group["config"])
        ms = replicas[replicas["cell_id"].isin(group["cell_id"])
                      & replicas["run"].isin(group["run"])]["value"]
        m = replicas_text(float(ms.min()), float(ms.max())) if len(ms) else "–"
        methods = vectorized[vectorized["cell_id"].isin(group["cell_id"])
                             & vectorized["run"].isin(group["run"])]["value"]
        rows.append({
            "objective": objective, "estimator": estimator, "S": samples, "M": m,
            "bound": _distinct(bound_text(c) for c in configs),
            "KL": _distinct(kl_text(c) for c in configs),
            "direct term": _distinct(direct_term_text(c) for c in configs),
            "temperature": _distinct(temperature_text(c) for c in configs),
            "samples": _distinct(samples_text(c) for c in configs),
            "statistics": _distinct(STATISTICS[float(v)] for v in methods) or "–",
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _distinct(values: Any) -> str:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return "; ".join(seen)


__all__ = ["bound_text", "conventions", "direct_term_text", "kl_text", "samples_text",
           "temperature_text"]


def biased_estimators(cells: pd.DataFrame) -> set[str]:
    """The estimator labels of a run whose estimator is biased by design (its `unbiased` flag
    is False: the relaxations, the straight-through family, STL-IWAE for K > 1, ...), read
    from the cells' configs; an estimator this installation cannot build is not marked."""
    biased = set()
    for label, config in zip(cells["estimator"], cells["config"], strict=True):
        est = _estimator(str(config.get("estimator_name")), _json(config.get("estimator_options")))
        if est is not None and not est.unbiased:
            biased.add(str(label))  # as the tables show it (`display_estimators`)
    return biased
