"""The runner: plan a suite's cells, run the missing ones, write each to the store.

    run_dir = runner.run("standard")                  # a new run under runs/
    run_dir = runner.run("standard", resume=run_dir)  # finish an interrupted one

Every completed cell is written in one transaction as soon as it arrives, so an interrupted run
loses nothing that completed, and `resume` runs exactly the cells that are missing (failed
cells are retried). Pairs that do not apply are recorded as "not_applicable" with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

from estibench.benchmarks.data.cache import open_data
from estibench.benchmarks.harness.cell import failed, not_applicable, resolve_device
from estibench.benchmarks.harness.executors import Executor, InProcess
from estibench.benchmarks.harness.plan import expand, with_overrides
from estibench.benchmarks.harness.preflight import check_against_data
from estibench.benchmarks.harness.spec import CellSpec
from estibench.benchmarks.metrics import environment
from estibench.benchmarks.results import rundir
from estibench.benchmarks.results.store import (
    CELL_CONFIG_KEYS,
    STORE_FILENAME,
    CellResult,
    Store,
    cell_key,
    legacy_cell_key,
)
from estibench.benchmarks.suites.schema import Suite, SuiteError, load_suite

ProgressCallback = Callable[[CellResult, int, int], None]


def _refuse_an_empty_store(run_dir: Path, what: str) -> None:
    """A 0-byte results.sqlite (a truncated or hand-made file): SQLite would take it for a new,
    empty store and the run would start over as if nothing had been there."""
    store = run_dir / STORE_FILENAME
    if store.is_file() and store.stat().st_size == 0:
        raise SuiteError(f"cannot {what} {str(run_dir)!r}: its {STORE_FILENAME} is empty "
                         "(0 bytes), so it holds no cells; start a new run with a new --out")


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
    on_todo: Callable[[list[CellSpec]], None] | None = None,
    on_run_dir: Callable[[Path], None] | None = None,
) -> Path:
    """Run a suite (name, path or `Suite`) and return the run directory.

    resume: an existing run directory; its completed cells are skipped. The suite defaults to
    the one stored there, and must be the same (`rundir`); the data may have moved
    (`data_path`) if its content has not. seeds and data_path override the suite's and
    are recorded with it. on_run_dir(path) is told the run directory once it is claimed;
    on_todo(cells) receives the cells about to run, in run order; on_start(total, todo) and
    on_cell(result, done, todo) report progress.
    """
    if resume is not None:
        resumed = Path(resume)
        if not (resumed / STORE_FILENAME).is_file():
            raise SuiteError(f"cannot resume {str(resumed)!r}: no {STORE_FILENAME} there")
        _refuse_an_empty_store(resumed, "resume")
        spec = rundir.stored_suite(resumed) if suite is None else load_suite(suite)
        run_dir: Path | None = resumed
    else:
        spec = load_suite("standard" if suite is None else suite)
        run_dir = Path(out) if out is not None else None
        if run_dir is not None:  # --out on a run directory continues it: the same check
            _refuse_an_empty_store(run_dir, "continue")
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
        attach = getattr(executor, "attach", None)
        if attach is not None:  # it keeps files in the run directory (submitit)
            attach(run_dir)
        done = store.completed_keys()
        if done:  # a hand-damaged store is refused now, naming the row, not after every cell
            store.cells(CELL_CONFIG_KEYS)
            store.metrics()

        def completed(cell: CellSpec) -> bool:
            config = cell.to_json()
            return cell_key(config) in done or legacy_cell_key(config) in done

        run_id = store.start_run(spec.name, spec.model_dump(), environment())
        for cell, reason in plan.inapplicable:
            if not completed(cell):
                store.write_cell(run_id, not_applicable(cell, reason))
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
