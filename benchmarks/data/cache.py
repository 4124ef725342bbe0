"""A suite's (train, test) datasets, opened once per process.

The runner's up-front check, the run directory's content hash and every in-process cell ask for
the same split; they share one load.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from estibench.benchmarks.data import Dataset, open_dataset


def open_data(spec: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """The (train, test) datasets a suite's data section names; `DataError` if unavailable.
    Cached per process: the runner's up-front check and every in-process cell share one load."""
    where = {k: v for k, v in spec.items() if k != "sha256"}  # a cell's config records the hash
    return _open_data(json.dumps(where, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _open_data(spec_json: str) -> tuple[Dataset, Dataset]:
    spec = json.loads(spec_json)
    common = {
        "binarization": spec["binarization"], "threshold": spec["threshold"],
        "seed": spec["split_seed"], "test_fraction": spec["test_fraction"],
        "path": spec["path"], **spec["options"],
    }
    return (open_dataset(spec["name"], "train", **common),
            open_dataset(spec["name"], "test", **common))
