"""asv benchmarks of estibench: time and tracked metrics per estimator x objective, over commits.

asv imports this directory as a top-level package (named after the directory, `asv`), so the
modules here import each other relatively (`from .common import ...`) and import the code under
test by its installed names (`estibench.estimators`, `estibench.benchmarks.objectives`,
`estibench.benchmarks.metrics`). `python -m estibench.benchmarks.regression record` points those
names at the commit being measured: a git worktree put first on the path through ASV_PYTHONPATH
and named in ESTIBENCH_CODE, while this benchmark suite stays the one of the current checkout,
as asv does with the environments it builds.

- `common.py`: the small configurations, the fixed batch, `Problem` (setup and skip rules).
- `bench_speed.py`: `time_` one gradient estimate and one training step.
- `bench_metrics.py`: `track_` fixed-seed log10 gradient variance, bias norm, ELBO gap, seconds
  per sample and peak tensor memory of one estimate.
"""

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

_SUBPACKAGES = ("estimators", "benchmarks", "reports")  # folders at a checkout's root


class _CommitFinder(importlib.abc.MetaPathFinder):
    """Finds `estibench.estimators`, `.benchmarks` and `.reports` in the commit's worktree,
    whose folders sit at its root (as setuptools' package-dir maps them when installed)."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        parent, _, name = fullname.rpartition(".")
        init = self.tree / name / "__init__.py"
        if parent != "estibench" or name not in _SUBPACKAGES or not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)])


def _measure_only_the_commit() -> None:
    """Under `record` (ESTIBENCH_CODE set), import the commit's code and nothing else.

    The commit's worktree comes first on sys.path, so `estibench` is imported from it, and
    `_CommitFinder` maps its subpackages to the worktree's folders. setuptools' editable finder
    would quietly supply the modules the commit *lacks* from the installed checkout, mixing two
    versions: it is dropped, and such a module fails to import (asv records a failed benchmark).
    """
    tree = os.environ.get("ESTIBENCH_CODE")
    if tree:
        sys.meta_path[:] = [finder for finder in sys.meta_path
                            if not getattr(finder, "__module__", "").startswith("__editable__")]
        sys.meta_path.append(_CommitFinder(Path(tree)))


_measure_only_the_commit()
