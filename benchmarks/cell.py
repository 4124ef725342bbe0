"""One cell of a suite: train an objective with an estimator and measure it at checkpoints.

`run_cell(config, device)` is a plain top-level function of JSON-able arguments so that every
executor (in-process, process pool, Dask) can ship it; it never raises for a failing cell: the
failure (NaN loss or gradient, an exception) comes back as a `CellResult` with status "failed"
and the reason, and the run goes on. Everything in a cell is deterministic from its seed.
"""

from __future__ import annotations

import functools
import json
import math
import time
import traceback
from typing import Any

import torch

import estimators
from benchmarks import data as datasets
from benchmarks import metrics, objectives
from benchmarks.objectives import LatentVariableModel
from benchmarks.store import CellResult, cell_key

Row = tuple[int, str, float]


class CellFailure(RuntimeError):
    """A cell that cannot go on (non-finite loss or gradient): the message is the reason."""


def resolve_device(device: str, check_available: bool = True) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error (unless
    `check_available` is False: the spelling alone is checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if check_available and device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def open_data(spec: dict[str, Any]) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The (train, test) datasets a suite's data section names; `DataError` if unavailable.
    Cached per process: the runner's up-front check and every in-process cell share one load."""
    return _open_data(json.dumps(spec, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _open_data(spec_json: str) -> tuple[datasets.Dataset, datasets.Dataset]:
    spec = json.loads(spec_json)
    common = {
        "binarization": spec["binarization"], "threshold": spec["threshold"],
        "seed": spec["split_seed"], "test_fraction": spec["test_fraction"],
        "path": spec["path"], **spec["options"],
    }
    return (datasets.open_dataset(spec["name"], "train", **common),
            datasets.open_dataset(spec["name"], "test", **common))


def temperature_at(schedule: dict[str, float], step: int) -> float:
    """tau(step) = max(minimum, initial * exp(-rate * step))."""
    return max(schedule["minimum"], schedule["initial"] * math.exp(-schedule["rate"] * step))


def _set_temperature(estimator: estimators.Estimator, tau: float) -> None:
    if hasattr(estimator, "temperature"):
        estimator.temperature = tau


def _finite_grad_norm(parameters: list[torch.nn.Parameter]) -> float:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


class _Cell:
    def __init__(self, config: dict[str, Any], device: torch.device) -> None:
        self.config = config
        self.device = device
        self.rows: list[Row] = []
        torch.manual_seed(config["seed"])
        self.objective = objectives.get(config["objective_name"], **config["objective_options"])
        self.objective.to(device)
        self.estimator = estimators.get(config["estimator_name"], **config["estimator_options"])
        self.estimator.to(device)
        if config["trainer_name"] == config["estimator_name"] and (
            config["trainer_options"] == config["estimator_options"]
        ):
            self.trainer = self.estimator
        else:
            self.trainer = estimators.get(config["trainer_name"], **config["trainer_options"])
            self.trainer.to(device)
        self.is_toy = not isinstance(self.objective, LatentVariableModel)
        train, test = open_data(config["data"])
        self.train_set = train
        generator = torch.Generator().manual_seed(config["seed"])
        self.generator = generator
        test_x = test.binary(torch.Generator().manual_seed(config["seed"])).to(device)
        m = config["metrics"]
        self.eval_batch = None if self.is_toy else test_x[: m["eval_batch_size"]]
        self.held_out = None if self.is_toy else test_x[: m["bounds_examples"]]

    def record(self, step: int, name: str, value: float) -> None:
        self.rows.append((step, name, float(value)))

    def batches(self):
        """Training batches forever: a fresh permutation (and binarization) each epoch."""
        batch_size = self.config["training"]["batch_size"]
        while True:
            x = self.train_set.binary(self.generator).to(self.device)
            order = torch.randperm(len(x), generator=self.generator).to(self.device)
            for i in range(0, len(x) - batch_size + 1, batch_size):
                yield x[order[i : i + batch_size]]

    def measure(self, step: int) -> None:
        m, S = self.config["metrics"], self.config["num_samples"]
        _set_temperature(self.estimator, temperature_at(self.config["training"]["temperature"],
                                                         step))
        groups = self.objective.parameter_groups()
        for wrt in m["wrt"]:
            if wrt != "distribution" and not groups.get(wrt):
                continue  # toys have no networks
            stats = metrics.gradient_stats(
                self.objective, self.estimator, self.eval_batch, replicas=m["replicas"],
                num_samples=S, wrt=wrt, seed=self.config["seed"] * 100_003 + step,
            )
            for name, value in stats.as_dict().items():
                self.record(step, f"grad/{wrt}/{name}", value)
        if self.objective.has_exact:
            with torch.no_grad():
                x = self.held_out
                self.record(step, "test/exact_objective", self.objective.exact(x).mean())
        if m["bounds"] and not self.is_toy:
            result = metrics.bounds(self.objective, self.held_out, ks=tuple(m["iwae_ks"]),
                                    seed=self.config["seed"])
            for name, value in result.as_dict().items():
                self.record(step, f"test/{name}", value)

    def train(self) -> None:
        cfg = self.config["training"]
        steps, S = cfg["steps"], self.config["num_samples"]
        checkpoints = {steps if c == -1 else c for c in self.config["metrics"]["checkpoints"]}
        parameters = list(self.objective.parameters()) + list(self.trainer.parameters())
        optimizer_cls = torch.optim.Adam if cfg["optimizer"] == "adam" else torch.optim.SGD
        optimizer = optimizer_cls(parameters, lr=cfg["learning_rate"]) if parameters else None
        batches = None if self.is_toy else self.batches()
        # compile: the forward (objective and estimator) compiled once; a temperature schedule
        # changes a guarded float, so it recompiles (and falls back to eager past dynamo's
        # recompile limit).
        estimate = (torch.compile(self.objective.estimate, dynamic=False) if cfg.get("compile")
                    else self.objective.estimate)
        self.trainer.train()
        started = time.perf_counter()
        for step in range(steps + 1):
            if step in checkpoints:
                self.measure(step)
            if step == steps:
                break
            _set_temperature(self.trainer, temperature_at(cfg["temperature"], step))
            x = None if batches is None else next(batches)
            out = estimate(x, self.trainer, S)
            loss = -out.loss.mean()
            if out.aux_loss is not None:
                loss = loss + out.aux_loss.mean()
            if not torch.isfinite(loss):
                raise CellFailure(f"non-finite loss ({float(loss)}) at training step {step}")
            assert optimizer is not None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = _finite_grad_norm(parameters)
            if not math.isfinite(norm):
                raise CellFailure(f"non-finite gradient (norm {norm}) at training step {step}")
            optimizer.step()
            if step % cfg["log_every"] == 0 or step == steps - 1:
                self.record(step, "train/objective", out.value.mean())
                self.record(step, "train/seconds", time.perf_counter() - started)

    def evaluations(self) -> int:
        """Evaluations of f per batch element in one estimate of the measured estimator (in
        eval mode: no state update)."""
        mode = self.estimator.training
        self.estimator.eval()
        try:
            return int(self.objective.estimate(self.eval_batch, self.estimator,
                                               self.config["num_samples"]).evaluations)
        finally:
            self.estimator.train(mode)

    def measure_throughput(self) -> None:
        m, steps = self.config["metrics"], self.config["training"]["steps"]
        evaluations = self.evaluations()
        self.record(steps, "estimator/evaluations", evaluations)
        variance = [v for s, n, v in self.rows
                    if s == steps and n == "grad/distribution/total_variance"]
        if variance:
            self.record(steps, "efficiency/variance_x_evaluations",
                        metrics.evaluation_normalized_variance(variance[-1], evaluations))
        if not m["throughput"]:
            return
        result = metrics.throughput(
            self.objective, self.estimator,
            x=None if self.is_toy else self.eval_batch,
            num_samples=self.config["num_samples"], device=str(self.device),
            min_run_time=m["throughput_min_run_time"],
        )
        for name, value in result.as_dict().items():
            if isinstance(value, (int, float)):
                self.record(steps, f"time/{name}", value)
        if variance:
            self.record(steps, "efficiency/variance_x_time",
                        metrics.work_normalized_variance(variance[-1],
                                                         result.time_per_estimate))


@functools.lru_cache(maxsize=1)
def _environment() -> dict[str, Any]:
    return metrics.environment()


def run_cell(config: dict[str, Any], device: str = "cpu", threads: int = 1) -> CellResult:
    """Train and measure one cell; failures come back as status 'failed' with the reason."""
    torch.set_num_threads(threads)  # one thread per cell: same numbers under every executor
    started = time.time()
    env = dict(_environment(), threads=threads)
    rows: list[Row] = []
    try:
        dev = resolve_device(device)
        env["device"] = str(dev)
        cell = _Cell(config, dev)
        rows = cell.rows
        cell.train()
        cell.measure_throughput()
        status, reason = "ok", None
    except CellFailure as err:
        status, reason = "failed", str(err)
    except Exception as err:  # a crashing cell must not take the run down
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        status, reason = "failed", last
    return CellResult(key=cell_key(config), config=config, status=status, reason=reason,
                      started=started, finished=time.time(), environment=env,
                      metrics=rows)  # a failed cell keeps its partial curves


def not_applicable(config: dict[str, Any], reason: str) -> CellResult:
    """The record of a pair that does not apply (never run)."""
    now = time.time()
    return CellResult(key=cell_key(config), config=config, status="not_applicable",
                      reason=reason, started=now, finished=now, environment={}, metrics=[])
