"""The runner: expand a suite into cells, run the missing ones, write each to the store.

    run_dir = benchmarks.run("standard")                  # a new run under runs/
    run_dir = benchmarks.run("standard", resume=run_dir)  # finish an interrupted one

Every completed cell is written in one transaction as soon as it arrives, so an interrupted run
loses nothing that completed, and `resume` runs exactly the cells that are missing (failed
cells are retried). Pairs that do not apply are recorded as "not_applicable" with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import estimators
from benchmarks import objectives
from benchmarks.cell import not_applicable, open_data, resolve_device
from benchmarks.executors import Executor, InProcess
from benchmarks.metrics import environment
from benchmarks.store import CellResult, Store, cell_key
from benchmarks.suite import Suite, SuiteError, load_suite

SUITE_FILENAME = "suite.json"


@dataclass(frozen=True)
class Plan:
    """A suite expanded: cells to run and pairs that do not apply (with reasons)."""

    runnable: list[dict[str, Any]]
    inapplicable: list[tuple[dict[str, Any], str]]

    @property
    def size(self) -> int:
        return len(self.runnable) + len(self.inapplicable)


def _applies(objective_spec: Any, estimator_spec: Any, num_samples: int) -> str | None:
    """None if the estimator applies to the objective with S samples, else the reason."""
    objective = objectives.get(objective_spec.name, **objective_spec.options)
    estimator = estimators.get(estimator_spec.name, **estimator_spec.options)
    try:
        objective.check(estimator)
        with torch.no_grad():  # a dry run catches option-dependent refusals (loo with S=1)
            objective.estimate(objective.example_input(), estimator, num_samples)
    except estimators.EstimatorError as err:
        return str(err)
    return None


def expand(suite: Suite, seeds: list[int] | None = None) -> Plan:
    """Every (objective, estimator, seed, num_samples) cell of the suite."""
    runnable, inapplicable = [], []
    trainer = suite.estimator(suite.train_with) if suite.protocol == "shared" else None
    for obj in suite.objectives:
        for est in suite.estimators:
            for num_samples in est.num_samples or suite.num_samples:
                reason = est.missing or _applies(obj, est, num_samples)
                if reason is None and trainer is not None:
                    why = trainer.missing or _applies(obj, trainer, num_samples)
                    reason = None if why is None else f"trainer {trainer.id}: {why}"
                train = trainer or est
                for seed in seeds if seeds is not None else suite.seeds:
                    config = {
                        "suite": suite.name, "protocol": suite.protocol,
                        "objective": obj.id, "objective_name": obj.name,
                        "objective_options": obj.options,
                        "kl": obj.options.get("kl", "analytic"),
                        "bound": obj.options.get("bound", "elbo"),
                        "estimator": est.id, "estimator_name": est.name,
                        "estimator_options": est.options,
                        "trained_with": train.id, "trainer_name": train.name,
                        "trainer_options": train.options,
                        "seed": seed, "num_samples": num_samples,
                        "data": suite.data.model_dump(),
                        "training": suite.training.model_dump(),
                        "metrics": suite.metrics.model_dump(),
                    }
                    if reason is None:
                        runnable.append(config)
                    else:
                        inapplicable.append((config, reason))
    return Plan(runnable, inapplicable)


def new_run_dir(suite: Suite, root: Path = Path("runs")) -> Path:
    """runs/<suite>-<timestamp>/, unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{suite.name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{suite.name}-{stamp}-{n}"
    return path


def _suite_of_run(run_dir: Path) -> Suite:
    from benchmarks.suite import parse_suite

    path = run_dir / SUITE_FILENAME
    if not path.is_file():
        raise SuiteError(f"cannot resume {str(run_dir)!r}: it has no {SUITE_FILENAME} "
                         "(is it a run directory made by estibench run?)")
    return parse_suite(json.loads(path.read_text()), repr(str(path)))


ProgressCallback = Callable[[CellResult, int, int], None]


def run(
    suite: str | Path | Suite | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    seeds: list[int] | None = None,
    executor: Executor | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_cell: ProgressCallback | None = None,
) -> Path:
    """Run a suite (name, path or `Suite`) and return the run directory.

    resume: an existing run directory; its completed cells are skipped. The suite defaults to
    the one stored there. on_start(total, todo) and on_cell(result, done, todo) report progress.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "results.sqlite").is_file():
            raise SuiteError(f"cannot resume {str(run_dir)!r}: no results.sqlite there")
        spec = _suite_of_run(run_dir) if suite is None else load_suite(suite)
    else:
        spec = load_suite("standard" if suite is None else suite)
        run_dir = Path(out) if out is not None else new_run_dir(spec)
    executor = executor or InProcess()
    # Fail fast on a bad device before any cell; whether CUDA exists is the workers' business
    # when cells run elsewhere (a CPU-only client driving GPU workers).
    resolve_device(device, check_available=getattr(executor, "local", True))
    plan = expand(spec, seeds)
    if plan.runnable:
        open_data(spec.data.model_dump())  # a missing or malformed data file: fail before a cell
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / SUITE_FILENAME).exists():
        (run_dir / SUITE_FILENAME).write_text(json.dumps(spec.model_dump(), indent=2))
    with Store.open(run_dir) as store:
        done = store.completed_keys()
        run_id = store.start_run(spec.name, spec.model_dump(), environment())
        for config, reason in plan.inapplicable:
            if cell_key(config) not in done:
                store.write_cell(run_id, not_applicable(config, reason))
        todo = [c for c in plan.runnable if cell_key(c) not in done]
        if on_start is not None:
            on_start(plan.size, len(todo))
        results: Iterator[CellResult] = executor.run(todo, device)
        for i, result in enumerate(results, 1):
            store.write_cell(run_id, result)
            if on_cell is not None:
                on_cell(result, i, len(todo))
        store.finish_run(run_id)
    return run_dir
