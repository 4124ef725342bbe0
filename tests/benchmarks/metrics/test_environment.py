"""Every cell records the commit it ran at and whether the tree was dirty; None where that is
not known (no git, or the package installed outside a checkout)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path

import pytest

from estibench.benchmarks.harness.runner import run
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite

env_module = importlib.import_module("estibench.benchmarks.metrics.environment")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "code.py").write_text("x = 1\n")
    _git(repo, "add", "code.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_a_clean_checkout_records_its_commit_and_a_change_makes_it_dirty(
        checkout: Path, monkeypatch) -> None:
    monkeypatch.setattr(env_module, "REPOSITORY", checkout)
    env = env_module.environment()
    assert env["commit"] == _git(checkout, "rev-parse", "HEAD") and len(env["commit"]) == 40
    assert env["dirty"] is False
    (checkout / "untracked.txt").write_text("not part of the code\n")
    assert env_module.environment()["dirty"] is False
    (checkout / "code.py").write_text("x = 2\n")
    assert env_module.environment()["dirty"] is True


def test_outside_a_checkout_commit_and_dirty_are_none(checkout: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    # Installed into a site-packages directory that is not a checkout, or that lies inside
    # some other repository (a virtual environment in a project): neither is this code's commit.
    plain = tmp_path / "site-packages"
    nested = checkout / "venv" / "lib" / "site-packages"
    for place in (plain, nested):
        place.mkdir(parents=True)
        monkeypatch.setattr(env_module, "REPOSITORY", place)
        env = env_module.environment()
        assert (env["commit"], env["dirty"]) == (None, None), place


def test_without_git_commit_and_dirty_are_none(checkout: Path, tmp_path: Path,
                                               monkeypatch) -> None:
    monkeypatch.setattr(env_module, "REPOSITORY", checkout)
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    env = env_module.environment()
    assert (env["commit"], env["dirty"]) == (None, None)


def test_every_cell_records_the_commit_and_dirty_flag(tmp_path: Path) -> None:
    suite = parse_suite({
        "name": "env", "training": {"steps": 0},
        "metrics": {"checkpoints": [0], "replicas": 4, "wrt": ["distribution"],
                    "bounds": False, "throughput": False},
        "objectives": [{"name": "bernoulli_toy"}], "estimators": [{"name": "reinforce"}],
    })
    with Store.open(run(suite, out=tmp_path / "run", device="cpu"), create=False) as store:
        environments = list(store.cells()["environment"])
    here = env_module.environment()
    if shutil.which("git") and (env_module.REPOSITORY / ".git").exists():
        assert here["commit"] is not None  # run from this checkout: its commit is known
    assert [(e["commit"], e["dirty"]) for e in environments] == [(here["commit"],
                                                                  here["dirty"])]
