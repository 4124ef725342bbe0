"""The reference reports in one command: run shipped suites from a clean checkout and write
their reports where the documentation links them.

    python -m estibench.reference_reports                       # standard -> docs/results/
    python -m estibench.reference_reports standard sbn --workers 2
    python -m estibench.reference_reports --resume              # finish interrupted runs

Each suite runs into `runs/reference/<suite>` (the standard suite into `runs/reference`), with
`--resume` continuing what is there; its report goes to `docs/results/` (standard) or
`docs/results/<suite>/`. A dirty checkout is refused (the reports record the commit they ran
at, and a dirty one names no code anyone can check out) unless `--allow-dirty`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from estibench.benchmarks.metrics.environment import changed_files

PAPER_SUITES = ("mohamed2020", "relax-toy", "dreg-iwae", "jang2017", "sbn")


def destinations(suite: str, runs: Path, docs: Path) -> tuple[Path, Path]:
    """(run directory, report directory) of a suite."""
    if suite == "standard":
        return runs, docs
    return runs / suite, docs / suite


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m estibench.reference_reports",
        description="Run shipped suites and write the reference reports the docs link.")
    parser.add_argument("suites", nargs="*", default=["standard"],
                        help=f"suites to run [standard]; 'all' adds {', '.join(PAPER_SUITES)}")
    parser.add_argument("--workers", type=int, default=2, help="worker processes [2]")
    parser.add_argument("--runs", default="runs/reference", help="where the runs go")
    parser.add_argument("--docs", default="docs/results", help="where the reports go")
    parser.add_argument("--resume", action="store_true", help="continue runs already there")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run from a checkout with uncommitted changes")
    args = parser.parse_args(argv)
    suites = ["standard", *PAPER_SUITES] if args.suites == ["all"] else args.suites
    root = Path.cwd()
    changed = changed_files(root) or []
    if changed and not args.allow_dirty:
        print(f"error: the checkout has uncommitted changes ({', '.join(changed[:5])}"
              f"{', ...' if len(changed) > 5 else ''}): commit them, so that the reports name "
              "code anyone can check out, or pass --allow-dirty", file=sys.stderr)
        return 2
    from estibench.reports import write_report

    for suite in suites:
        run_dir, report_dir = destinations(suite, Path(args.runs), Path(args.docs))
        print(f"{suite}: running into {run_dir}", flush=True)
        written = write_report(_run(suite, run_dir, args), out=report_dir)
        print(f"{suite}: report {written['md']}", flush=True)
    return 0


def _run(suite: str, run_dir: Path, args: argparse.Namespace) -> Path:
    """The suite run (or resumed) through the CLI's own path, with its progress."""
    from estibench.api import run
    from estibench.benchmarks.harness.executors import make_executor

    executor = make_executor("pool" if args.workers > 1 else "inprocess", workers=args.workers)
    try:
        if args.resume and run_dir.exists():
            result = run(resume=run_dir, executor=executor, progress=True, report=False)
        else:
            result = run(suite, out=run_dir, executor=executor, progress=True, report=False)
    finally:
        executor.close()
    return result.run_dir


if __name__ == "__main__":
    raise SystemExit(main())
