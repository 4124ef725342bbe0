"""Is `benchmarks` estibench's harness? A project's own `benchmarks/` package (asv's default
layout) earlier on sys.path shadows it, and every `from benchmarks...` in estibench then fails
with an unhelpful ImportError or AttributeError; this check says what happened instead."""

from __future__ import annotations

import importlib
import sys


class ShadowedHarnessError(ImportError):
    """`import benchmarks` found another package than estibench's harness."""


def require_harness() -> None:
    """Raise `ShadowedHarnessError` naming the package found and how to avoid it."""
    try:
        found = importlib.import_module("benchmarks")
    except ImportError as err:  # a broken project package fails before estibench's own
        raise ShadowedHarnessError(f"importing 'benchmarks' failed ({err}); {_advice()}") from err
    if getattr(found, "ESTIBENCH_HARNESS", False):
        return
    where = getattr(found, "__file__", None) or list(getattr(found, "__path__", [])) or "?"
    raise ShadowedHarnessError(
        f"'import benchmarks' found {where}, not estibench's harness: a package or folder "
        f"named 'benchmarks' comes earlier on sys.path and shadows it; {_advice()}")


def _advice() -> str:
    first = sys.path[0] if sys.path else ""
    cwd = " (the current directory is on sys.path first: '' or PYTHONPATH)" if first in (
        "", ".") else ""
    return ("run estibench from another directory, drop that folder from PYTHONPATH, or "
            f"rename the project's own benchmarks package (asv: set benchmark_dir){cwd}")
