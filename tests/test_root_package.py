"""The root package: thin, with the public names imported on first use."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

import estibench


def test_the_version_is_the_installed_distributions():
    assert estibench.__version__ == metadata.version("estibench")


def test_the_public_names_resolve():
    assert callable(estibench.run) and callable(estibench.get)
    assert type(estibench.get("reinforce", baseline="loo")).__name__ == "Reinforce"
    assert "reinforce" in estibench.estimators.available()
    assert "bernoulli_toy" in estibench.objectives.available()
    assert callable(estibench.reports.write_report)
    assert {"run", "get", "estimators", "objectives", "reports"} <= set(dir(estibench))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        estibench.nope  # noqa: B018


def test_importing_the_estimators_leaves_the_harness_and_pandas_unimported():
    code = ("import sys, estibench.estimators\n"
            "print(sorted(m for m in ('pandas', 'estibench.benchmarks', 'estibench.reports',"
            " 'estibench.cli', 'estibench.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
