"""estibench.benchmarks.claims: a suite's published claims checked against a run's noise.

    from estibench.benchmarks.claims import check_run
    results = check_run(run_dir)    # verdicts: reproduced | not reproduced | inconclusive | not run

The claims themselves are part of the suite description (`estibench.benchmarks.suites.claims`,
validated against the suite that holds them); `check` holds the statistics (pandas and scipy,
imported when a claim is checked).
"""

from __future__ import annotations

from .check import ClaimResult, check_run

__all__ = ["ClaimResult", "check_run"]
