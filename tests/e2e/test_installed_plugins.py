"""The test suite holds on a researcher's machine where third-party plugins are installed: the
tests of the built-in registries do not see them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.plugin_support import write_plugin

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = '''
from estibench.estimators import Estimator
from estibench.estimators.base import output


class Installed(Estimator):
    """An installed third-party estimator."""

    name = "installed_elsewhere"
    supports = "anything"

    def estimate(self, q, f, num_samples, noise):
        z = q.sample((num_samples,))
        return output(self.evaluate(f, z, num_samples, q), z)
'''
# The tests that list or run every registered estimator.
REGISTRY_TESTS = [
    "tests/benchmarks/harness/test_runner.py::"
    "test_standard_suite_covers_every_objective_and_applicable_estimator",
    "tests/docs/test_examples.py::test_the_plugin_runs_vectorized_and_unbiased",
]


def test_registry_tests_pass_with_a_plugin_installed(tmp_path):
    entry = "installed_elsewhere = installed_plugin:Installed"
    site = write_plugin(tmp_path / "site", "installed_plugin", PLUGIN,
                        {"estibench.estimators": entry})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    seen = subprocess.run(
        [sys.executable, "-c", "from estibench import estimators; "
                               "print('installed_elsewhere' in estimators.available())"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert seen.stdout.split() == ["True"], seen.stderr  # the plugin is installed
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *REGISTRY_TESTS],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
