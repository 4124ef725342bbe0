"""What a cell costs, from its configuration, so progress and estimates weigh cells honestly.

A cell's work is counted in evaluations of f on one example ("units"):

    training     steps x batch x S x e
    gradients    checkpoints x parameter groups x replicas x eval batch x S x e
    bounds       checkpoints x held-out examples x (sum of the IWAE ks + S)   (VAEs)

with e the estimator's f evaluations per sample on that objective (`catalogue`), batch 1 for
toys (no data), plus STEP_UNITS per training step for what a step costs whatever its size
(Python dispatch through the estimator, the objective and the optimizer). The timing of
throughput takes a fixed time instead (three timed functions of
`throughput_min_run_time` seconds each, plus warm-up), so a cell's estimate is
`units x seconds-per-unit + fixed seconds`; `Clock` learns seconds-per-unit from the cells done.
The dry run's estimate (`estimate_seconds`) times the gradient statistics on their own instead
(`statistics_seconds`): their speed per evaluation of f is not a training step's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.harness.catalogue import evaluations_per_sample

# Fitted on the standard suite (231 cells, in-process): time = 7.5e-7 s per unit + 2.7e-3 s per
# training step. Without it the ETA, learned from the toy cells that run first (1 unit per
# sample), predicted 36,000 s for a run of 811 s; with 500 it predicted 728 s.
STEP_UNITS = 500
THROUGHPUT_TIMERS = 3  # estimate, step, floor (estibench.benchmarks.metrics.throughput)
THROUGHPUT_OVERHEAD = 2.0  # x min_run_time: warm-up, blocked_autorange rounding, memory step


def _pair_key(config: dict[str, Any]) -> str:
    keys = ("objective_name", "objective_options", "estimator_name", "estimator_options",
            "num_samples")
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, default=str)


@functools.lru_cache(maxsize=256)
def _pair(key: str) -> tuple[float, bool]:
    """(evaluations per sample, is a toy) of a pair, by one dry run on the example input."""
    c = json.loads(key)
    try:
        objective = objectives.get(c["objective_name"], **c["objective_options"])
        estimator = estimators.get(c["estimator_name"], **c["estimator_options"])
        return (evaluations_per_sample(objective, estimator, c["num_samples"]),
                objective.example_input() is None)
    except Exception:  # a plugin that cannot be built: its cell fails at once, costing nothing
        return 0.0, True


def _checkpoints(config: dict[str, Any]) -> int:
    steps = config["training"]["steps"]
    return len({steps if c == -1 else c for c in config["metrics"]["checkpoints"]})


def _replicas(metrics: dict[str, Any]) -> int:
    """M, or for replicas = "auto" its minimum: most cells stop there (light tails); the
    heavy-tailed ones that run on make the ETA optimistic, and it corrects itself as cells end."""
    m = metrics["replicas"]
    return int(metrics["replicas_min"]) if m == "auto" else int(m)


def cell_units(config: dict[str, Any]) -> float:
    """Evaluations of f on one example that the cell performs (see the module docstring)."""
    return _training_and_bounds_units(config) + _statistics_units(config)


def _training_and_bounds_units(config: dict[str, Any]) -> float:
    per_sample, toy = _pair(_pair_key(config))
    t, m, s = config["training"], config["metrics"], config["num_samples"]
    batch = 1 if toy else t["batch_size"]
    units = t["steps"] * (batch * s * per_sample + STEP_UNITS)
    if m["bounds"] and not toy:
        units += _checkpoints(config) * m["bounds_examples"] * (sum(m["iwae_ks"]) + s)
    return float(units)


def _statistics_units(config: dict[str, Any]) -> float:
    per_sample, toy = _pair(_pair_key(config))
    m, s = config["metrics"], config["num_samples"]
    eval_batch = 1 if toy else m["eval_batch_size"]
    return float(_checkpoints(config) * len(m["wrt"]) * _replicas(m) * eval_batch * s
                 * per_sample)


def fixed_seconds(config: dict[str, Any]) -> float:
    """Seconds the cell spends regardless of its size (timing the throughput)."""
    m = config["metrics"]
    return THROUGHPUT_TIMERS * THROUGHPUT_OVERHEAD * m["throughput_min_run_time"] * (
        1 if m["throughput"] else 0)


def describe(config: dict[str, Any]) -> str:
    """objective / estimator / S / seed, how a cell is named on screen."""
    return (f"{config['objective']} / {config['estimator']} / S={config['num_samples']} / "
            f"seed {config['seed']}")


@dataclass
class Clock:
    """ETA from cost done: seconds per unit learnt from finished cells."""

    todo: list[dict[str, Any]]
    started: float = field(default_factory=time.perf_counter)
    units: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from estibench.benchmarks.results.store import cell_key

        self.keys = [cell_key(c) for c in self.todo]
        for key, config in zip(self.keys, self.todo, strict=True):
            self.units[key] = cell_units(config)
            self.fixed[key] = fixed_seconds(config)

    @property
    def total_units(self) -> float:
        return sum(self.units.values())

    @property
    def units_done(self) -> float:
        return sum(self.units[k] for k in self.done)

    def finish(self, key: str) -> None:
        if key in self.units and key not in self.done:
            self.done.append(key)

    def current(self) -> dict[str, Any] | None:
        """The first cell, in run order, that has not finished (what in-process runs now)."""
        finished = set(self.done)
        return next((c for k, c in zip(self.keys, self.todo, strict=True)
                     if k not in finished), None)

    def eta(self) -> float | None:
        """Seconds left, or None before the first cell finished."""
        if not self.done:
            return None
        elapsed = time.perf_counter() - self.started
        fixed_done = sum(self.fixed[k] for k in self.done)
        rate = max(elapsed - fixed_done, 0.0) / max(self.units_done, 1.0)
        left = [k for k in self.keys if k not in set(self.done)]
        return sum(self.units[k] * rate + self.fixed[k] for k in left)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread, as cells run (`run_cell`); the caller's count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _built(config: dict[str, Any], batch: int) -> tuple[Any, Any, Any]:
    """(objective, estimator, x) of a cell's pair, x a random binary batch (None for toys)."""
    _, toy = _pair(_pair_key(config))
    objective = objectives.get(config["objective_name"], **config["objective_options"])
    estimator = estimators.get(config["estimator_name"], **config["estimator_options"])
    example = objective.example_input()
    x = None if toy else torch.bernoulli(torch.full((batch, example.shape[-1]), 0.5))
    return objective, estimator, x


def seconds_per_unit(config: dict[str, Any], steps: int = 3) -> float:
    """Time a few training steps of a cell's pair (after one warm-up), per unit of work.

    Used by `estibench run --dry-run`: it builds the model and times forward and backward on
    random binary data, it trains and stores nothing."""
    per_sample, toy = _pair(_pair_key(config))
    s = config["num_samples"]
    batch = 1 if toy else config["training"]["batch_size"]
    objective, estimator, x = _built(config, batch)
    elapsed: list[float] = []
    with _one_thread():
        _timed_steps(objective, estimator, x, s, steps, elapsed)
    # A step's units as `cell_units` counts them: the fixed STEP_UNITS are most of a toy's step.
    return sorted(elapsed[1:])[len(elapsed[1:]) // 2] / (batch * s * per_sample + STEP_UNITS)


def _timed_steps(objective: Any, estimator: Any, x: Any, s: int, steps: int,
                 elapsed: list[float]) -> None:
    for _ in range(steps + 1):
        begin = time.perf_counter()
        out = objective.estimate(x, estimator, s)
        loss = -out.loss.sum()
        if out.aux_loss is not None:
            loss = loss + out.aux_loss.sum()
        if loss.requires_grad:
            loss.backward()
        elapsed.append(time.perf_counter() - begin)


PROBE_REPLICAS = (64, 192)  # one and three of the engine's chunks: a line through two sizes


def statistics_seconds(config: dict[str, Any]) -> tuple[float, float]:
    """(seconds per checkpoint, seconds per replica) of a cell's gradient statistics, summed
    over its `wrt`: `gradient_stats` timed at PROBE_REPLICAS replicas (after a warm-up call) on
    random binary data of the evaluation batch's size. The statistics run vectorized (or in a
    loop) at a speed per evaluation of f unlike a training step's (a toy's replica costs a
    small fraction of its step's fixed dispatch), so they are timed, not scaled from training.
    Used by `estibench run --dry-run`."""
    from estibench.benchmarks import metrics

    m, s = config["metrics"], config["num_samples"]
    objective, estimator, x = _built(config, m["eval_batch_size"])
    groups = objective.parameter_groups()
    wrts = [w for w in m["wrt"] if w == "distribution" or groups.get(w)]  # as `run_cell`
    small, large = PROBE_REPLICAS
    fixed = per_replica = 0.0
    with _one_thread():
        objective.estimate(x, estimator, s)  # builds what the estimator sizes from q (prepare)
        for wrt in wrts:
            times = []
            for replicas in (8, small, large):  # the first is a warm-up
                begin = time.perf_counter()
                metrics.gradient_stats(objective, estimator, x, replicas=replicas,
                                       num_samples=s, wrt=wrt, seed=0)
                times.append(time.perf_counter() - begin)
            slope = max(times[2] - times[1], 0.0) / (large - small)
            per_replica += slope
            fixed += max(times[1] - small * slope, 0.0)
    return fixed, per_replica


def estimate_seconds(todo: list[dict[str, Any]]) -> float:
    """A rough run time: each cell's training and bounds at its pair's measured speed per unit,
    its gradient statistics as timed by `statistics_seconds`, plus fixed time."""
    rates: dict[str, float] = {}
    probes: dict[str, tuple[float, float]] = {}
    total = 0.0
    for config in todo:
        key = _pair_key(config)
        if key not in rates:
            rates[key] = seconds_per_unit(config)
        total += _training_and_bounds_units(config) * rates[key] + fixed_seconds(config)
        if _statistics_units(config):
            m = config["metrics"]
            probe = json.dumps([key, m["eval_batch_size"], m["wrt"]])
            if probe not in probes:
                try:
                    probes[probe] = statistics_seconds(config)
                except Exception:  # a plugin the probe cannot run: cost it as f evaluations
                    probes[probe] = (0.0, _statistics_units(config) * rates[key]
                                     / (_checkpoints(config) * _replicas(m)))
            fixed, per_replica = probes[probe]
            total += _checkpoints(config) * (fixed + _replicas(m) * per_replica)
    return total
