"""The runner: expand a suite into cells, run the missing ones, write each to the store.

    run_dir = runner.run("standard")                  # a new run under runs/
    run_dir = runner.run("standard", resume=run_dir)  # finish an interrupted one

Every completed cell is written in one transaction as soon as it arrives, so an interrupted run
loses nothing that completed, and `resume` runs exactly the cells that are missing (failed
cells are retried). Pairs that do not apply are recorded as "not_applicable" with the reason.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.data.cache import open_data
from estibench.benchmarks.harness.cell import (
    failed,
    not_applicable,
    resolve_device,
    temperature_of,
)
from estibench.benchmarks.harness.executors import Executor, InProcess
from estibench.benchmarks.harness.preflight import check_against_data
from estibench.benchmarks.metrics import environment
from estibench.benchmarks.results import rundir
from estibench.benchmarks.results.store import (
    STORE_FILENAME,
    CellResult,
    Store,
    cell_key,
    legacy_cell_key,
)
from estibench.benchmarks.suites.schema import Suite, SuiteError, load_suite, parse_suite
from estibench.estimators.errors import ContractError


@dataclass(frozen=True)
class Plan:
    """A suite expanded: cells to run and pairs that do not apply (with reasons)."""

    runnable: list[dict[str, Any]]
    inapplicable: list[tuple[dict[str, Any], str]]
    broken: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.runnable) + len(self.inapplicable) + len(self.broken)


class _Broken(Exception):
    """The estimator itself fails (a plugin's bug): its cells fail, the others run."""


def _applies(objective_spec: Any, estimator_spec: Any, num_samples: int) -> str | None:
    """None if the estimator applies to the objective with S samples, else the reason;
    `_Broken` (with the exception's last line) if building or running it fails otherwise."""
    objective = objectives.get(objective_spec.name, **objective_spec.options)
    try:
        estimator = estimators.get(estimator_spec.name, **estimator_spec.options)
        objective.check(estimator)
        with torch.no_grad():  # a dry run catches option-dependent refusals (loo with S=1)
            objective.estimate(objective.example_input(), estimator, num_samples)
    except ContractError as err:
        raise _Broken(str(err)) from None
    except estimators.EstimatorError as err:
        return str(err)
    except Exception as err:
        raise _Broken(traceback.format_exception_only(type(err), err)[-1].strip()) from None
    return None


def _temperature(spec: Any, schedule: dict[str, float] | None) -> Any:
    """The temperature the estimator of `spec` runs at (`temperature_of`); None for an optional
    estimator that is not registered, or a plugin that cannot be built (its cells fail with
    the reason, see `_Broken`)."""
    if spec.missing is not None:
        return None
    try:
        return temperature_of(spec.name, spec.options, schedule)
    except Exception:
        return None


def expand(suite: Suite, seeds: list[int] | None = None) -> Plan:
    """Every (objective, estimator, seed, num_samples) cell of the suite. Cells record the
    data's content hash, so they are identified by the data, not by where it was read (this
    loads the data: `DataError` if it cannot)."""
    data = suite.data.model_dump()
    data["sha256"] = rundir.data_sha256(data)
    runnable, inapplicable, broken = [], [], []
    trainer = suite.estimator(suite.train_with) if suite.protocol == "shared" else None
    schedule = suite.training.model_dump()["temperature"]  # None: no schedule
    for obj in suite.objectives:
        for est in suite.estimators:
            for num_samples in est.num_samples or suite.num_samples:
                failure = None
                try:
                    reason = est.missing or _applies(obj, est, num_samples)
                    if reason is None and trainer is not None:
                        why = trainer.missing or _applies(obj, trainer, num_samples)
                        reason = None if why is None else f"trainer {trainer.id}: {why}"
                except _Broken as err:
                    reason, failure = None, str(err)
                train = trainer or est
                temperature = _temperature(est, schedule)
                trainer_temperature = _temperature(train, schedule)
                for seed in seeds if seeds is not None else suite.seeds:
                    config = {
                        "suite": suite.name, "protocol": suite.protocol,
                        "objective": obj.id, "objective_name": obj.name,
                        "objective_options": obj.options,
                        "kl": obj.options.get("kl", "analytic"),
                        "bound": obj.options.get("bound", "elbo"),
                        "estimator": est.id, "estimator_name": est.name,
                        "estimator_options": est.options,
                        "temperature": temperature,
                        "trained_with": train.id, "trainer_name": train.name,
                        "trainer_options": train.options,
                        "trainer_temperature": trainer_temperature,
                        # only when set, so the keys of cells without it do not change
                        **({"trainer_training": train.own_training()}
                           if train.own_training() else {}),
                        "seed": seed, "num_samples": num_samples,
                        "data": data,
                        "training": suite.training.model_dump(),
                        "metrics": suite.metrics.model_dump(),
                    }
                    if failure is not None:
                        broken.append((config, failure))
                    elif reason is None:
                        runnable.append(config)
                    else:
                        inapplicable.append((config, reason))
    return Plan(runnable, inapplicable, broken)


def with_overrides(suite: Suite, seeds: list[int] | None = None,
                   data_path: str | None = None) -> Suite:
    """The suite with the command line's seeds and data path, validated like the file."""
    if seeds is None and data_path is None:
        return suite
    raw = suite.model_dump()
    if seeds is not None:
        raw["seeds"] = seeds
    if data_path is not None:
        raw["data"]["path"] = data_path
    return parse_suite(raw, "(with --seeds / --data-path)")


ProgressCallback = Callable[[CellResult, int, int], None]


def run(
    suite: str | Path | Suite | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    seeds: list[int] | None = None,
    data_path: str | None = None,
    executor: Executor | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_cell: ProgressCallback | None = None,
    on_todo: Callable[[list[dict[str, Any]]], None] | None = None,
    on_run_dir: Callable[[Path], None] | None = None,
) -> Path:
    """Run a suite (name, path or `Suite`) and return the run directory.

    resume: an existing run directory; its completed cells are skipped. The suite defaults to
    the one stored there, and must be the same (`estibench.benchmarks.results.rundir`); the data
    may have moved
    (`data_path`) if its content has not. seeds and data_path override the suite's and are
    recorded with it. on_run_dir(path) is told the run directory once it is claimed;
    on_todo(configs) receives the cells about to run, in run order; on_start(total, todo) and
    on_cell(result, done, todo) report progress.
    """
    if resume is not None:
        run_dir: Path | None = Path(resume)
        if not (run_dir / STORE_FILENAME).is_file():
            raise SuiteError(f"cannot resume {str(run_dir)!r}: no {STORE_FILENAME} there")
        spec = rundir.stored_suite(run_dir) if suite is None else load_suite(suite)
    else:
        spec = load_suite("standard" if suite is None else suite)
        run_dir = Path(out) if out is not None else None
    spec = with_overrides(spec, seeds, data_path)
    executor = executor or InProcess()
    # Fail fast on a bad device before any cell; whether CUDA exists is the workers' business
    # when cells run elsewhere (a CPU-only client driving GPU workers).
    resolve_device(device, check_available=getattr(executor, "local", True))
    train, _ = open_data(spec.data.model_dump())  # missing or malformed data: before a cell
    check_against_data(spec, train)
    plan = expand(spec)
    digest = rundir.data_sha256(spec.data.model_dump())
    with rundir.claim(run_dir, spec, digest, resuming=resume is not None) as run_dir, \
            Store.open(run_dir) as store:
        if on_run_dir is not None:
            on_run_dir(run_dir)
        done = store.completed_keys()

        def completed(config: dict[str, Any]) -> bool:
            return cell_key(config) in done or legacy_cell_key(config) in done

        run_id = store.start_run(spec.name, spec.model_dump(), environment())
        for config, reason in plan.inapplicable:
            if not completed(config):
                store.write_cell(run_id, not_applicable(config, reason))
        todo = [c for c in plan.runnable if not completed(c)]
        broken = [(c, reason) for c, reason in plan.broken if not completed(c)]
        failing = [failed(c, reason) for c, reason in broken]
        if on_todo is not None:
            on_todo([c for c, _ in broken] + todo)
        if on_start is not None:
            on_start(plan.size, len(todo) + len(failing))
        results: Iterator[CellResult] = itertools.chain(failing, executor.run(todo, device))
        for i, result in enumerate(results, 1):
            store.write_cell(run_id, result)
            if on_cell is not None:
                on_cell(result, i, len(todo) + len(failing))
        store.finish_run(run_id)
    return run_dir
