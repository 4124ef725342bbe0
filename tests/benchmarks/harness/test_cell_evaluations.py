"""A cell records how many evaluations of f one estimate makes, and variance x evaluations."""

from __future__ import annotations

import pytest

from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

SUITE = {
    "name": "evaluations",
    "num_samples": [3],
    "training": {"steps": 2, "batch_size": 8, "log_every": 1},
    "metrics": {"checkpoints": [-1], "replicas": 8, "eval_batch_size": 4, "bounds": False,
                "throughput": False},
    "objectives": [{"name": "bernoulli_toy", "options": {"dims": 2}},
                   {"name": "bernoulli_vae", "options": {"input_dim": 64, "latent_dim": 3,
                                                         "bound": "iwae"}}],
    "estimators": [{"name": "reinforce"}, {"name": "u2g"}, {"name": "indecater"},
                   {"name": "vimco"}],
}


def test_cells_record_evaluations_and_variance_x_evaluations(tmp_path) -> None:
    run_dir = run(parse_suite(SUITE), out=tmp_path / "run", device="cpu")
    with Store.open(run_dir, create=False) as store:
        frame = store.tidy()
        cells = store.cells()
    assert set(cells[cells["status"] != "not_applicable"]["status"]) == {"ok"}
    final = frame.pivot_table(index=["objective", "estimator"], columns="metric",
                              values="value")
    # S = 3: REINFORCE 3, three antithetic pairs 6, IndeCateR S x D x K = 3 x 1 x 2 (each
    # toy dimension is its own batch element), VIMCO K = 3.
    label = {c["objective_name"]: c["objective"] for c in cells["config"]}  # bernoulli_toy-2
    toy, vae = label["bernoulli_toy"], label["bernoulli_vae"]
    expected = {(toy, "reinforce"): 3, (toy, "disarm"): 6, (toy, "indecater"): 6,
                (vae, "vimco"): 3}
    for key, evaluations in expected.items():
        row = final.loc[key]
        assert row["estimator/evaluations"] == evaluations, key
        assert row["efficiency/variance_x_evaluations"] == pytest.approx(
            row["grad/distribution/total_variance"] * evaluations), key
