"""asv benchmarks of estibench: time and tracked metrics per estimator x objective, over commits.

asv imports this directory as a top-level package (named after the directory, `asv`), so the
modules here import each other relatively (`from .common import ...`) and import the code under
test by its installed names (`estimators`, `benchmarks.objectives`, `benchmarks.metrics`).
`python -m benchmarks.regression record` points those names at the commit being measured: a git
worktree put first on the path through ASV_PYTHONPATH and named in ESTIBENCH_CODE, while this
benchmark suite stays the one of the current checkout, as asv does with the environments it
builds.

- `common.py`: the small configurations, the fixed batch, `Problem` (setup and skip rules).
- `bench_speed.py`: `time_` one gradient estimate and one training step.
- `bench_metrics.py`: `track_` fixed-seed log10 gradient variance, bias norm, ELBO gap, seconds
  per sample and peak tensor memory of one estimate.
"""

import os
import sys


def _measure_only_the_commit() -> None:
    """Under `record` (ESTIBENCH_CODE set), drop the meta-path finder of an editable install.

    The commit's worktree comes first on sys.path, so every module it has is imported from it;
    but setuptools' editable finder would quietly supply the modules the commit *lacks* (say
    `benchmarks.metrics` on an older commit) from the installed checkout, mixing two versions.
    Without it such a module fails to import, and asv records the benchmark as failed.
    """
    if os.environ.get("ESTIBENCH_CODE"):
        sys.meta_path[:] = [finder for finder in sys.meta_path
                            if not getattr(finder, "__module__", "").startswith("__editable__")]


_measure_only_the_commit()
