"""benchmarks.claims: published claims stated in a suite and checked against a run's noise.

    [[claims]]                                    # in a suite's TOML
    statement = "REINFORCE's variance is above RLOO's"
    source = "Grathwohl et al. 2018, figure 1"
    metric = "grad/distribution/log10_total_variance"
    step = "every"
    left = { objective = "toy", estimator = "reinforce" }
    relation = ">"
    right = { objective = "toy", estimator = "reinforce-loo" }

    from benchmarks.claims.check import check_run
    results = check_run(run_dir)    # verdicts: reproduced | not reproduced | inconclusive | not run

`model` is the pydantic spec (validated against the suite that holds it), `check` the
statistics (pandas, scipy: imported on use), `catalogue` the metric names a suite records.
"""

from __future__ import annotations

from .model import CellRef, Claim, errors_against

__all__ = ["CellRef", "Claim", "errors_against"]
