"""Shared tiny suites, and what tests read from the runs made of them.

`TOY` is the smallest suite file (TOML text) the command-line tests run.

`TINY_RUN` (12 cells of a fraction of a second) is what the executor tests compare: every
executor must store the numbers the in-process run stores (`in_process_numbers`, a session
fixture in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from estibench.benchmarks.results.store import Store

# The smallest suite file the CLI tests run: one toy, RLOO, two training steps.
TOY = """
seeds = [0]
num_samples = [2]
[training]
steps = 2
[metrics]
checkpoints = [-1]
replicas = 4
throughput = false
[[objectives]]
name = "bernoulli_toy"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
"""

# Small on purpose (12 cells of a fraction of a second): two seeds, a toy and a tiny VAE, and
# an unbiased, a relaxed and the exact estimator; every metric family is measured.
TINY_RUN = {
    "name": "executors",
    "seeds": [0, 1],
    "num_samples": [2],
    "training": {"steps": 6, "batch_size": 16, "log_every": 2},
    "metrics": {"checkpoints": [0, -1], "replicas": 8, "eval_batch_size": 8,
                "bounds_examples": 16, "iwae_ks": [1, 4], "throughput_min_run_time": 0.01},
    "objectives": [
        {"name": "bernoulli_toy"},
        {"name": "categorical_vae", "options": {"variables": 2, "categories": 2, "hidden": 8}},
    ],
    "estimators": [
        {"name": "reinforce", "options": {"baseline": "loo"}},
        {"name": "gumbel_softmax"},
        {"name": "exact"},
    ],
}
# Timings differ from run to run; everything else must not.
TIMINGS = ("time/", "train/seconds", "train/load_1min", "efficiency/")  # vary by run


def numbers(run_dir: Path) -> pd.Series:
    """Every metric value of a run but the timings, indexed by (cell key, step, metric)."""
    with Store.open(run_dir, create=False) as store:
        frame = store.tidy()
    keep = ~frame["metric"].str.startswith(TIMINGS)
    return frame[keep].set_index(["key", "step", "metric"])["value"].sort_index()


def statuses(run_dir: Path) -> pd.Series:
    """Status of every cell of a run, by key."""
    with Store.open(run_dir, create=False) as store:
        cells = store.cells()
        assert store.integrity_ok()
    assert cells["key"].is_unique
    return cells.set_index("key")["status"].sort_index()


