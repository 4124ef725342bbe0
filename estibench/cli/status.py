"""``estibench status``: where a run stands, its cells and its array tasks (the submitit
executor's): queued, running, done or failed, with each task's log. A plain function with typer
annotations, registered on the app by `estibench.cli.app`.

Exit codes: 0 (whatever the run's state); 2 bad input (not a run directory).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from estibench.cli.common import console, fail, safe

RunDir = Annotated[Path, typer.Argument(help="A run directory (it holds results.sqlite)")]


def status(run_dir: RunDir) -> None:
    """Where a run stands: its cells by status, and its array tasks (--executor submitit):
    queued, running, done or failed, with their logs."""
    from estibench.benchmarks.harness.executors import ExecutorError
    from estibench.benchmarks.harness.executors.submitit_cluster import (
        FOLDER,
        TASK_STATES,
        task_states,
    )
    from estibench.benchmarks.results.store import Store, StoreError

    try:
        with Store.open(run_dir, create=False) as store:
            cells = store.cells()
        tasks = task_states(run_dir)
    except (StoreError, ExecutorError) as err:
        raise fail(str(err)) from None
    stored = dict(zip(cells["key"], cells["status"], strict=True))
    counts = Counter(stored.values())
    shown = ", ".join(f"{s.replace('_', ' ')} {counts[s]}" for s in sorted(counts)) or "none"
    console.print(f"[bold]{safe(str(run_dir))}[/]: {len(stored)} cell(s) stored ({shown})")
    if not tasks:
        console.print("no array tasks recorded (the run did not use --executor submitit)")
        return
    table = Table(title="array tasks")
    for column in ("task", "state", "cells", "stored", "log"):
        table.add_column(column)
    for task in tasks:
        state = task.state + (f" ({task.detail})" if task.detail and task.detail.lower()
                              != task.state else "")
        table.add_row(safe(task.record.job_id), safe(state), str(len(task.record.cells)),
                      str(sum(k in stored for k in task.record.cells)),
                      safe(task.record.log))
    console.print(table)
    by_state = Counter(t.state for t in tasks)
    console.print(", ".join(f"{s} {by_state[s]}" for s in TASK_STATES if by_state[s]))
    waiting = [p for p in (run_dir / FOLDER / "results").glob("*.pkl")
               if p.stem not in stored]
    if waiting:
        console.print(f"{len(waiting)} finished cell(s) wait to be stored: estibench run "
                      f"--resume {safe(str(run_dir))}")
