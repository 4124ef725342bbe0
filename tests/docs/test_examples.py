"""What the documentation's examples say they do, they do: the loops learn, the plugin runs
vectorized and unbiased, the hint about `exact` is the error users see."""

from __future__ import annotations

import re

import pytest
import torch
from torch.distributions import Independent, OneHotCategorical

from estibench import estimators
from tests.docs import blocks
from tests.helpers import bonferroni_bound

GETTING_STARTED = "docs/getting-started.md"
WRITING = "docs/guide/writing-an-estimator.md"


def _python(page: str, page_run) -> list[blocks.Result]:
    return [r for r in page_run(page) if r.block.lang == "python" and r.namespace]


def _bounds(output: str) -> list[float]:
    return [float(m) for m in re.findall(r"ELBO\s+(-?[\d.]+) nats", output)]


def test_the_training_loop_is_the_readme_one(page_run) -> None:
    readme = [b.code for b in blocks.blocks("README.md") if b.lang == "python"]
    loop = _python(GETTING_STARTED, page_run)[0]
    assert [loop.block.code] == readme
    assert _bounds(loop.output)[-1] > _bounds(loop.output)[0] + 5


def test_the_objective_loop_runs_and_reports_bounds(page_run) -> None:
    objective_loop = _python(GETTING_STARTED, page_run)[1]
    bounds = _bounds(objective_loop.output)
    assert len(bounds) == 5 and bounds[-1] > bounds[0]
    assert objective_loop.namespace["out"].loss.shape == (32,)
    assert objective_loop.namespace["vae"].has_exact  # 4^4 configurations: log p(x) is exact
    assert "log_marginal" in objective_loop.output  # the bounds it printed


def test_the_suite_from_python_runs_every_cell(page_run) -> None:
    (run,) = _python("docs/guide/runs.md", page_run)
    result = run.namespace["result"]
    assert result.ok > 0 and result.failed == 0 and result.not_applicable > 0
    assert result.report is None  # report=False


def test_the_exact_hint_names_max_configurations() -> None:
    text = (blocks.ROOT / GETTING_STARTED).read_text()
    assert "max_configurations=4096" in text and "4^8 = 65536" in text
    x = torch.zeros(2, 8 * 4)
    q = Independent(OneHotCategorical(logits=x.view(2, 8, 4)), 1)
    with pytest.raises(estimators.UnsupportedDistributionError,
                       match=r"4\^8 = 65536 .*max_configurations=4096.*max_configurations=65536"):
        estimators.get("exact")(q, lambda z: z.sum((-1, -2)), 1)


def test_the_plugin_runs_vectorized_and_unbiased(page_run) -> None:
    (plugin,) = _python(WRITING, page_run)
    stats = plugin.namespace["stats"]
    assert stats.method == "vectorized" and stats.replicas == 4000
    assert float(stats.exact.abs().min()) > 0
    z = (stats.mean - stats.exact) / (stats.variance / stats.replicas).sqrt()
    assert float(z.abs().max()) < bonferroni_bound(stats.num_params)
    # what the block registered did not outlive it
    assert "constant_baseline" not in estimators.available()
