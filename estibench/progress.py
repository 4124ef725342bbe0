"""Progress of a run on the console: an ETA by cost done, the current cell.

On a terminal a live bar (its length is the work of the cells, not their number); elsewhere
(CI logs, pipes) one line per finished cell, so a log shows how far a run got.
"""

from __future__ import annotations

import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from estibench.benchmarks.harness.cost import Clock
from estibench.benchmarks.results.store import describe_cell
from estibench.terminal import safe


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    return str(datetime.timedelta(seconds=round(seconds)))


def eta_text(span: tuple[float, float] | None) -> str:
    """`0:03:20`, or `0:02:10–0:09:40` while cells of a kind not yet run make it uncertain
    (ends within 20% of each other are shown as one)."""
    if span is None:
        return "estimating"
    low, high = span
    if high <= 1.2 * low + 1:
        return _duration((low + high) / 2)
    return f"{_duration(low)}–{_duration(high)}"


class RunProgress:
    """`on_todo`, `on_start` and `on_cell` callbacks of `estibench.run` that print progress."""

    def __init__(self, console: Console, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.clock: Clock | None = None
        self.total = 0
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> RunProgress:
        if self.live:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.fields[cells]}"), TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"), console=self.console)
            self.progress.__enter__()
            self.task = self.progress.add_task("planning", total=None, cells="", eta="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)

    def on_todo(self, todo: list[dict[str, Any]]) -> None:
        self.clock = Clock(todo)

    def on_start(self, total: int, todo: int) -> None:
        self.total = todo
        skipped = total - todo
        line = f"{todo} of {total} cells to run" + (f" ({skipped} done or not applicable)"
                                                    if skipped else "")
        if self.progress is None:
            self.console.print(line, highlight=False)
        self._refresh()

    def on_cell(self, result: Any, done: int, todo: int) -> None:
        assert self.clock is not None
        self.clock.finish(result.key, result.finished - result.started)
        if self.progress is None:
            seconds = result.finished - result.started
            reason = f": {result.reason}" if result.reason else ""
            line = f"[{done}/{todo}] {describe_cell(result.config)}: {result.status}{reason}"
            self.console.print(f"{safe(line)} ({seconds:.1f} s; ETA "
                               f"{eta_text(self.clock.eta_range())})", highlight=False)
        self._refresh()

    def _refresh(self) -> None:
        if self.progress is None or self.clock is None:
            return
        current = self.clock.current()
        shown = f"running {current.describe()}" if current is not None else "done"
        self.progress.update(self.task, total=self.clock.total_units,
                             completed=self.clock.units_done, description=safe(shown),
                             cells=f"{len(self.clock.done)}/{self.total} cells",
                             eta=eta_text(self.clock.eta_range()))
