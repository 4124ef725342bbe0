"""The README's promises: CI runs exactly its commands, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, OneHotCategorical

from estibench import estimators

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str, lang: str = "bash") -> str:
    section = README.split(f"## {heading}\n", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def _commands(text: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci = _commands((ROOT / ".ci" / "run").read_text())
    for heading in ("Install", "Test"):
        for command in _commands(_block_after(heading)):
            assert command in ci, f"README {heading} command not in .ci/run: {command}"


def _python_blocks(heading: str) -> list[str]:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run(code: str, capsys) -> tuple[dict, list[float]]:
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    bounds = [float(m) for m in re.findall(r"ELBO\s+(-?[\d.]+) nats", printed)]
    return namespace, bounds


def test_readme_training_loop_prints_a_rising_elbo(capsys):
    loop, _ = _python_blocks("Use an estimator in your own training loop")
    namespace, bounds = _run(loop, capsys)
    assert len(bounds) == 5 and bounds[-1] > bounds[0] + 5  # it learns (fixed seed)
    elbo, out = namespace["elbo"], namespace["out"]
    assert elbo.loss.shape == (32,) and elbo.value.isfinite().all()
    # the bound is the ELBO: the estimate of E_q[log p(x|z)] minus the analytic KL
    kl = namespace["kl_divergence"](namespace["q"], namespace["prior"])
    assert torch.allclose(elbo.value, out.value - kl.detach())


def test_readme_exact_hint_names_max_configurations():
    loop, _ = _python_blocks("Use an estimator in your own training loop")
    assert "max_configurations=4096" in README and "4^8 = 65536" in README
    x = torch.zeros(2, 8 * 4)
    q = Independent(OneHotCategorical(logits=x.view(2, 8, 4)), 1)
    with pytest.raises(estimators.UnsupportedDistributionError,
                       match=r"4\^8 = 65536 .*max_configurations=4096.*max_configurations=65536"):
        estimators.get("exact")(q, lambda z: z.sum((-1, -2)), 1)


def test_readme_objective_loop_runs_and_reports_bounds(capsys):
    _, objective_loop = _python_blocks("Use an estimator in your own training loop")
    namespace, bounds = _run(objective_loop, capsys)
    assert len(bounds) == 5 and bounds[-1] > bounds[0]
    assert namespace["out"].loss.shape == (32,)
    assert namespace["vae"].has_exact  # 4^4 configurations: log p(x) is exact
