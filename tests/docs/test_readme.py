"""The README's promises: CI runs exactly its install and test commands, its example trains, and
its list of estimators is the registry's."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tests.docs import blocks

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
README_LIMIT = 200  # lines: what, install, quick start, one example, the estimators, links, tests


def _section(heading: str) -> str:
    return README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _block_after(heading: str, lang: str = "bash") -> str:
    return re.search(rf"```{lang}\n(.*?)```", _section(heading), re.S).group(1)


def _commands(text: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    ci = [c for c in _commands((ROOT / ".ci" / "run").read_text())
          if not c.startswith(("set ", "cd ", "export "))]
    assert _commands(_block_after("Install")) + _commands(_block_after("Test")) == ci, (
        "README's Install and Test blocks and .ci/run must list the same commands, in order")


def test_the_readme_stays_short():
    assert len(README.splitlines()) <= README_LIMIT


def test_the_readme_training_loop_prints_a_rising_elbo(page_run):
    (loop,) = [r for r in page_run("README.md") if r.block.lang == "python"]
    bounds = [float(m) for m in re.findall(r"ELBO\s+(-?[\d.]+) nats", loop.output)]
    assert len(bounds) == 5 and bounds[-1] > bounds[0] + 5  # it learns (fixed seed)
    namespace = loop.namespace
    elbo, out = namespace["elbo"], namespace["out"]
    assert elbo.loss.shape == (32,) and elbo.value.isfinite().all()
    # the bound is the ELBO: the estimate of E_q[log p(x|z)] minus the analytic KL
    kl = namespace["kl_divergence"](namespace["q"], namespace["prior"])
    assert torch.allclose(elbo.value, out.value - kl.detach())


def _listed_by_family() -> dict[str, list[str]]:
    section = _section("Estimators")
    listed = {}
    for family, names in re.findall(r"^- ([a-z -]+): (.+)$", section, re.M):
        listed[family.replace(" ", "_").replace("-", "_")] = re.findall(r"`([^`]+)`", names)
    return listed


def test_the_readme_lists_every_estimator_under_its_family():
    from estibench.benchmarks.harness.catalogue import builtin, describe_estimators

    registered = {r.name: r.family for r in describe_estimators() if builtin(r.name)}
    where = {name: family for family, names in _listed_by_family().items() for name in names}
    expected = [f"{name} under {family}" for name, family in registered.items()]
    found = [f"{name} under {where.get(name)}" for name in registered]
    assert sorted(where) == sorted(registered), "README lists an estimator that is not registered"
    assert found == expected, ("README's Estimators section lists each built-in estimator "
                               "(and alias) under its family, as `estibench list estimators` "
                               "shows them")


def test_the_readme_names_every_reinforce_baseline():
    from estibench.benchmarks.harness.catalogue import options
    from estibench.estimators import registry

    (baseline,) = [o for o in options(registry.factory("reinforce")) if o.name == "baseline"]
    line = next(line for line in _section("Estimators").splitlines() if "`reinforce`" in line)
    listed = re.search(r"\(baselines: ([^)]*)\)", line).group(1).split(", ")
    assert listed == list(baseline.allowed)


def test_the_readme_links_lead_somewhere():
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_the_readme_marks_what_it_does_not_run():
    for block in blocks.blocks("README.md"):
        if block.lang == "bash" and block.directive is None:
            assert all(c.startswith("estibench ") for c in blocks.commands(block)), block.where
