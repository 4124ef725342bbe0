"""What a cell costs, from its configuration, so progress and estimates weigh cells honestly.

A cell's work is counted in evaluations of f on one example ("units"):

    training     steps x batch x S x e
    gradients    checkpoints x parameter groups x replicas x eval batch x S x e
    bounds       checkpoints x held-out examples x (sum of the IWAE ks + S)   (VAEs)

with e the estimator's f evaluations per sample on that objective (found by the planner),
batch 1 for toys (no data), plus STEP_UNITS per training step for what a step costs whatever
its size (Python dispatch through the estimator, the objective and the optimizer). The timing
of throughput takes a fixed time instead (three timed functions of
`throughput_min_run_time` seconds each, plus warm-up), so a cell's estimate is
`units x seconds-per-unit + fixed seconds`; `Clock` learns seconds-per-unit from the cells done.
The dry run's estimate (`estimate_seconds`) times the gradient statistics on their own instead
(`statistics_seconds`): their speed per evaluation of f is not a training step's.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from estibench.benchmarks.harness.spec import CellSpec, EstimatorChoice

# Fitted on the standard suite (231 cells, in-process): time = 7.5e-7 s per unit + 2.7e-3 s per
# training step. Without it the ETA, learned from the toy cells that run first (1 unit per
# sample), predicted 36,000 s for a run of 811 s; with 500 it predicted 728 s.
STEP_UNITS = 500
SECONDS_PER_UNIT = 7.5e-7  # the same fit: a rough rate before any cell has run (`rough_seconds`)
THROUGHPUT_TIMERS = 3  # estimate, step, floor (estibench.benchmarks.metrics.throughput)
THROUGHPUT_OVERHEAD = 2.0  # x min_run_time: warm-up, blocked_autorange rounding, memory step


def _pair(cell: CellSpec) -> tuple[float, bool]:
    """(f evaluations per sample, is a toy) of a cell's pair, as the planner found them; a
    pair that could not be dry-run (a broken plugin: its cell fails at once) costs nothing."""
    if cell.evaluations_per_sample is None:
        return 0.0, True
    return cell.evaluations_per_sample, bool(cell.toy)


def pair_key(cell: CellSpec) -> str:
    """The pair and S of a cell: cells that share it time alike."""
    return json.dumps([cell.objective_name, cell.objective_options, cell.estimator.name,
                       cell.estimator.options, cell.num_samples], sort_keys=True, default=str)


def _checkpoints(cell: CellSpec) -> int:
    steps = cell.training.steps
    return len({steps if c == -1 else c for c in cell.metrics.checkpoints})


def _replicas(cell: CellSpec) -> int:
    """M, or for replicas = "auto" its minimum: most cells stop there (light tails); the
    heavy-tailed ones that run on make the ETA optimistic, and it corrects itself as cells end."""
    replicas = cell.metrics.replicas_setting()
    return replicas if isinstance(replicas, int) else replicas.minimum


def cell_units(cell: CellSpec) -> float:
    """Evaluations of f on one example that the cell performs (see the module docstring)."""
    return _training_and_bounds_units(cell) + _statistics_units(cell)


def _training_and_bounds_units(cell: CellSpec) -> float:
    per_sample, toy = _pair(cell)
    t, m, s = cell.training, cell.metrics, cell.num_samples
    batch = 1 if toy else t.batch_size
    units = t.steps * (batch * s * per_sample + STEP_UNITS)
    if m.bounds and not toy:
        units += _checkpoints(cell) * m.bounds_examples * (sum(m.iwae_ks) + s)
    return float(units)


def _statistics_units(cell: CellSpec) -> float:
    per_sample, toy = _pair(cell)
    m, s = cell.metrics, cell.num_samples
    eval_batch = 1 if toy else m.eval_batch_size
    return float(_checkpoints(cell) * len(m.wrt) * _replicas(cell) * eval_batch * s
                 * per_sample)


def reference_units(cell: CellSpec) -> float:
    """Evaluations of f of the cell's reference gradient (`MetricsSpec.reference`): computed
    once per checkpoint and shared by the cells measured there, so `Clock` charges it to the
    first of them in run order (about one evaluation per sample for its estimator)."""
    from estibench.benchmarks.suites.schema import ReferenceSpec

    reference, m = cell.metrics.reference, cell.metrics
    if not isinstance(reference, ReferenceSpec):
        return 0.0
    _, toy = _pair(cell)
    eval_batch = 1 if toy else m.eval_batch_size
    return float(_checkpoints(cell) * len(m.wrt) * reference.replicas * eval_batch
                 * reference.num_samples)


def _reference_group(cell: CellSpec) -> str:
    """Cells that share a reference: one objective, trajectory (trainer, its S, training) and
    seed. Under the independent protocol each estimator trains its own, so its group is its
    own; under the shared one every estimator measured on the trajectory is in it."""
    return json.dumps([cell.objective_name, cell.objective_options, cell.trainer.name,
                       cell.trainer.options, cell.trainer_num_samples, cell.seed,
                       cell.training.model_dump(), cell.metrics.model_dump()],
                      sort_keys=True, default=str)


def fixed_seconds(cell: CellSpec) -> float:
    """Seconds the cell spends regardless of its size (timing the throughput)."""
    m = cell.metrics
    return THROUGHPUT_TIMERS * THROUGHPUT_OVERHEAD * m.throughput_min_run_time * (
        1 if m.throughput else 0)


def rough_seconds(cell: CellSpec) -> float:
    """A cell's run time on one core before anything has been timed: its units at
    SECONDS_PER_UNIT plus its fixed seconds. Rough (it leaves the pair's own speed out): for
    weighing cells against each other, as when cells are grouped into cluster tasks."""
    return cell_units(cell) * SECONDS_PER_UNIT + fixed_seconds(cell)


def _kind(cell: CellSpec) -> str:
    """Cells whose seconds per unit are alike: one objective (its size sets the per-unit
    speed far more than the estimator does)."""
    return json.dumps([cell.objective_name, cell.objective_options], sort_keys=True, default=str)


@dataclass
class Clock:
    """ETA from cost done: seconds per unit learnt from finished cells, per kind of cell
    (`_kind`). Cells of a kind not seen yet are costed at the slowest and the fastest rate seen,
    so the ETA is a range until every kind left has run once (`eta_range`)."""

    todo: list[CellSpec]
    started: float = field(default_factory=time.perf_counter)
    units: dict[str, float] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [c.key for c in self.todo]
        self.kinds = {c.key: _kind(c) for c in self.todo}
        self.seconds: dict[str, float] = {}  # per finished cell: its own run time
        shared: set[str] = set()
        for key, cell in zip(self.keys, self.todo, strict=True):
            self.units[key] = cell_units(cell)
            self.fixed[key] = fixed_seconds(cell)
            group = _reference_group(cell)
            if group in shared:
                continue  # its trajectory's reference is computed by an earlier cell
            self.units[key] += reference_units(cell)
            shared.add(group)

    @property
    def total_units(self) -> float:
        return sum(self.units.values())

    @property
    def units_done(self) -> float:
        return sum(self.units[k] for k in self.done)

    def finish(self, key: str, seconds: float | None = None) -> None:
        """A cell is done; `seconds`: its own run time (the result's finished - started)."""
        if key in self.units and key not in self.done:
            self.done.append(key)
            if seconds is not None and seconds >= 0:
                self.seconds[key] = seconds

    def current(self) -> CellSpec | None:
        """The first cell, in run order, that has not finished (what in-process runs now)."""
        finished = set(self.done)
        return next((c for k, c in zip(self.keys, self.todo, strict=True)
                     if k not in finished), None)

    def _rates(self) -> dict[str, float]:
        """Seconds per unit per kind, from the cells whose run time is known."""
        spent: dict[str, float] = {}
        units: dict[str, float] = {}
        for key, seconds in self.seconds.items():
            kind = self.kinds[key]
            spent[kind] = spent.get(kind, 0.0) + max(seconds - self.fixed[key], 0.0)
            units[kind] = units.get(kind, 0.0) + max(self.units[key], 1.0)
        return {kind: spent[kind] / units[kind] for kind in spent}

    def eta_range(self) -> tuple[float, float] | None:
        """(low, high) wall seconds left, or None before the first cell finished. Equal ends
        once every kind left has a measured rate. Wall time from the cells' own times by the
        ratio of elapsed wall time to their sum (several workers run cells side by side)."""
        if not self.done:
            return None
        elapsed = time.perf_counter() - self.started
        left = [k for k in self.keys if k not in set(self.done)]
        rates = self._rates()
        if not rates:  # no run times given: one rate from the wall clock
            fixed_done = sum(self.fixed[k] for k in self.done)
            rate = max(elapsed - fixed_done, 0.0) / max(self.units_done, 1.0)
            eta = sum(self.units[k] * rate + self.fixed[k] for k in left)
            return eta, eta
        busy = sum(self.seconds.values())
        wall = min(1.0, elapsed / busy) if busy > 0 else 1.0
        low = high = 0.0
        slowest, fastest = max(rates.values()), min(rates.values())
        for key in left:
            known = rates.get(self.kinds[key])
            low += self.units[key] * (fastest if known is None else known) + self.fixed[key]
            high += self.units[key] * (slowest if known is None else known) + self.fixed[key]
        return low * wall, high * wall

    def eta(self) -> float | None:
        """Seconds left (the middle of `eta_range`), or None before the first cell finished."""
        span = self.eta_range()
        return None if span is None else (span[0] + span[1]) / 2


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread, as cells run (`run_cell`); the caller's count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _built(cell: CellSpec, batch: int) -> tuple[Any, Any, Any]:
    """(objective, estimator, x) of a cell's pair to time, x a random binary batch (None for
    toys)."""
    _, toy = _pair(cell)
    objective, estimator = cell.build_objective(), cell.estimator.build()
    example = objective.example_input()
    x = None if toy else torch.bernoulli(torch.full((batch, example.shape[-1]), 0.5))
    return objective, estimator, x


def seconds_per_unit(cell: CellSpec, steps: int = 3) -> float:
    """Time a few training steps of a cell's pair (after one warm-up), per unit of work.

    Used by `estibench run --dry-run`: it builds the model and times forward and backward on
    random binary data, it trains and stores nothing."""
    per_sample, toy = _pair(cell)
    s = cell.num_samples
    batch = 1 if toy else cell.training.batch_size
    objective, estimator, x = _built(cell, batch)
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


PROBE_REPLICAS = 64  # one chunk of the engine (`gradient_stats`' chunk_size)


def statistics_seconds(cell: CellSpec) -> tuple[float, float]:
    """(seconds per checkpoint, seconds per replica) of a cell's gradient statistics, summed
    over its `wrt`: `gradient_stats` timed at PROBE_REPLICAS replicas (after a warm-up call) on
    random binary data of the evaluation batch's size. The statistics run vectorized (or in a
    loop) at a speed per evaluation of f unlike a training step's (a toy's replica costs a
    small fraction of its step's fixed dispatch), so they are timed, not scaled from training.

    One chunk is timed and its time charged per replica: M replicas run as M / 64 chunks, and
    the fixed part of a call (the exact gradient, the tests) is charged once per chunk. That
    overstates a cell by its fixed part for each chunk after the first; on the standard suite
    the total is within 1% of a line fitted through two sizes, at a third of the probing time.
    Used by `estibench run --dry-run`."""
    from estibench.benchmarks import metrics

    m, s = cell.metrics, cell.num_samples
    objective, estimator, x = _built(cell, m.eval_batch_size)
    groups = objective.parameter_groups()
    wrts = [w for w in m.wrt if w == "distribution" or groups.get(w)]  # as `run_cell`
    per_replica = 0.0
    with _one_thread():
        objective.estimate(x, estimator, s)  # builds what the estimator sizes from q (prepare)
        for wrt in wrts:
            for replicas in (2, PROBE_REPLICAS):  # the first is a warm-up
                begin = time.perf_counter()
                metrics.gradient_stats(objective, estimator, x, replicas=replicas,
                                       num_samples=s, wrt=wrt, seed=0)
                seconds = time.perf_counter() - begin
            per_replica += seconds / PROBE_REPLICAS
    return 0.0, per_replica


@dataclass(frozen=True)
class CellSeconds:
    """A cell's predicted seconds in parts: `once` (training, bounds, fixed time) and, per
    checkpoint, the statistics' fixed part plus `per_replica` for each replica."""

    once: float
    per_checkpoint: float
    per_replica: float

    def total(self, checkpoints: int, replicas: int) -> float:
        return self.once + checkpoints * (self.per_checkpoint + replicas * self.per_replica)


def cell_seconds(todo: list[CellSpec]) -> list[CellSeconds]:
    """Each cell's `CellSeconds`: training and bounds at its pair's measured speed per unit
    (`seconds_per_unit`), its gradient statistics as timed by `statistics_seconds` (once per
    pair, evaluation batch and wrt), its reference gradient where the suite asks for one (the
    reference estimator timed the same way, charged to the first cell of the trajectory that
    shares it, as `Clock` does), plus fixed time. Times the pairs: seconds of work."""
    rates: dict[str, float] = {}
    probes: dict[str, tuple[float, float]] = {}
    shared: set[str] = set()

    def probe(cell: CellSpec, rate: float) -> tuple[float, float]:
        m = cell.metrics
        key = json.dumps([pair_key(cell), m.eval_batch_size, m.wrt])
        if key not in probes:
            try:
                probes[key] = statistics_seconds(cell)
            except Exception:  # a plugin the probe cannot run: cost it as f evaluations
                probes[key] = (0.0, _statistics_units(cell) * rate
                               / (_checkpoints(cell) * _replicas(cell)))
        return probes[key]

    out = []
    for cell in todo:
        key = pair_key(cell)
        if key not in rates:
            rates[key] = seconds_per_unit(cell)
        once = _training_and_bounds_units(cell) * rates[key] + fixed_seconds(cell)
        fixed = per_replica = 0.0
        if _statistics_units(cell):
            fixed, per_replica = probe(cell, rates[key])
        group = _reference_group(cell)
        reference = _reference_cell(cell)
        if reference is not None and group not in shared:
            replicas = cell.metrics.reference.replicas  # type: ignore[union-attr]
            once += _checkpoints(cell) * replicas * probe(reference, rates[key])[1]
            shared.add(group)
        out.append(CellSeconds(once, fixed, per_replica))
    return out


def _reference_cell(cell: CellSpec) -> CellSpec | None:
    """The cell measured with its reference estimator at the reference's S (the cell's own
    for the IWAE bound, whose gradient depends on K), or None without a reference."""
    from estibench.benchmarks.suites.schema import ReferenceSpec

    reference = cell.metrics.reference
    if not isinstance(reference, ReferenceSpec):
        return None
    iwae = cell.bound == "iwae"
    choice = EstimatorChoice(reference.estimator, reference.estimator, reference.options)
    return replace(cell, estimator=choice,
                               num_samples=cell.num_samples if iwae else reference.num_samples)


def estimate_seconds(todo: list[CellSpec]) -> float:
    """A rough run time: the sum of each cell's `cell_seconds` at its checkpoints and M."""
    return sum(parts.total(_checkpoints(cell), _replicas(cell))
               for cell, parts in zip(todo, cell_seconds(todo), strict=True))
