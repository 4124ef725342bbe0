"""Plugin estimators under the vectorized engine: one that draws its own random numbers
(q.sample()) falls back to the loop, says so, and stays right (the documented plugin's own run
is in tests/docs/test_examples.py)."""

from __future__ import annotations

import pytest
import torch

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.metrics import gradient_stats
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite
from estibench.estimators import Estimator, EstimatorOutput
from tests.helpers import bonferroni_bound


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Registrations made here do not outlive the test (other tests list every estimator)."""
    monkeypatch.setattr(estimators.registry, "_factories", dict(estimators.registry._factories))


class SamplesItself(Estimator):
    """REINFORCE that ignores `noise` and calls q.sample(): a random operation inside vmap."""

    name = "samples_itself"
    supports = "any distribution with sample() and log_prob()"

    def estimate(self, q, f, num_samples, noise):
        z = q.sample((num_samples,))
        fz = self.evaluate(f, z, num_samples, q)
        log_q = q.log_prob(z)
        return EstimatorOutput((fz + fz.detach() * (log_q - log_q.detach())).mean(0),
                               fz.detach().mean(0), z)


def _max_z(stats) -> float:
    z = (stats.mean - stats.exact) / (stats.variance / stats.replicas).sqrt()
    return float(z.abs().max())


def test_an_estimator_that_samples_itself_falls_back_to_the_loop() -> None:
    toy = objectives.get("bernoulli_toy", target=0.45, dims=8)
    estimator = SamplesItself()
    stats = gradient_stats(toy, estimator, None, replicas=1000, seed=3)
    assert stats.method == "loop"
    assert _max_z(stats) < bonferroni_bound(stats.num_params)
    # its own draws are seeded: the same seed gives the same numbers, another seed others
    again = gradient_stats(toy, estimator, None, replicas=50, seed=3)
    assert torch.equal(again.mean, gradient_stats(toy, estimator, None, replicas=50,
                                                  seed=3).mean)
    assert not torch.equal(again.mean, gradient_stats(toy, estimator, None, replicas=50,
                                                      seed=4).mean)


def test_other_errors_under_vmap_are_not_swallowed() -> None:
    class Broken(SamplesItself):
        name = "broken"

        def estimate(self, q, f, num_samples, noise):
            raise RuntimeError("something else")

    toy = objectives.get("bernoulli_toy")
    with pytest.raises(RuntimeError, match="something else"):
        gradient_stats(toy, Broken(), None, replicas=4)


def test_a_cell_records_which_method_ran(tmp_path) -> None:
    estimators.register(SamplesItself.name, SamplesItself)
    suite = parse_suite({
        "name": "plugin", "training": {"steps": 0},
        "metrics": {"checkpoints": [0], "replicas": 8, "wrt": ["distribution"],
                    "bounds": False, "throughput": False},
        "objectives": [{"name": "bernoulli_toy"}],
        "estimators": [{"name": "samples_itself"}, {"name": "reinforce"}],
    })
    with Store.open(run(suite, out=tmp_path / "run", device="cpu"), create=False) as store:
        cells, metrics = store.cells(), store.metrics()
    assert set(cells["status"]) == {"ok"}
    flag = metrics[metrics["metric"] == "grad/distribution/vectorized"]
    by_estimator = dict(zip([c["estimator"] for c in cells["config"]], cells["key"], strict=True))
    value = dict(zip(flag["key"], flag["value"], strict=True))
    assert value[by_estimator["samples_itself"]] == 0.0
    assert value[by_estimator["reinforce"]] == 1.0
    # the report says which ran the loop
    from estibench import reports
    from estibench.reports.conventions import conventions

    run_dir = tmp_path / "run"
    table = conventions(reports.load_cells(run_dir), reports.load(run_dir))
    statistics = dict(zip(table["estimator"], table["statistics"], strict=True))
    assert statistics["samples_itself"].startswith("loop (the estimator draws its own")
    assert statistics["reinforce"] == "vectorized"
