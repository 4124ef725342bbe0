"""benchmarks: the estibench harness (objectives, data, metrics, suites, runner, store, CLI).

`benchmarks.run(suite, out=..., resume=...)` runs a suite and returns the run directory.
"""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """Run a suite; see `benchmarks.runner.run`. (Imported lazily: the harness pulls in more
    than `benchmarks.objectives` users need.)"""
    from benchmarks.runner import run as _run

    return _run(*args, **kwargs)
