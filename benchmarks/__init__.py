"""benchmarks: the estibench harness (objectives, data, metrics, suites, runner, store, CLI).

`benchmarks.run(suite, out=..., resume=..., progress=..., report=...)` runs a suite and returns
a `RunResult` (the run directory, cells by status, failures; path-like).
"""

from __future__ import annotations

from typing import Any

# Tells estibench's own modules that `import benchmarks` found this package, not a project's
# own `benchmarks/` earlier on sys.path (see `reports.imports`).
ESTIBENCH_HARNESS = True


def run(*args: Any, **kwargs: Any) -> Any:
    """Run a suite; see `benchmarks.api.run`. (Imported lazily: the harness pulls in more
    than `benchmarks.objectives` users need.)"""
    from benchmarks.api import run as _run

    return _run(*args, **kwargs)
