"""The `estibench` console script: checks that `benchmarks` is estibench's harness, then runs
the CLI (`benchmarks.cli`). It lives outside `benchmarks` because a project's own
`benchmarks/` package earlier on sys.path would hide `benchmarks.cli` itself."""

from __future__ import annotations

import sys


def main() -> None:
    from reports.imports import ShadowedHarnessError, require_harness

    try:
        require_harness()
    except ShadowedHarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from benchmarks.cli import main as cli

    cli()
