"""Make a real installed-looking plugin: a module plus a *.dist-info with entry points.

Used by the plugin and end-to-end tests: putting the directory on PYTHONPATH makes
`importlib.metadata.entry_points` see it exactly as it sees a pip-installed package.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

NAN_ESTIMATOR = '''
import torch
from estibench.estimators import Estimator
from estibench.estimators.base import output


class NaNEstimator(Estimator):
    """A broken estimator: its surrogate is NaN, so training must fail the cell."""

    name = "nan_estimator"
    supports = "anything"

    def estimate(self, q, f, num_samples, noise):
        z = q.sample((num_samples,))
        fz = self.evaluate(f, z, num_samples, q)
        return output(fz * float("nan"), z)
'''


def write_plugin(root: Path, module: str, source: str, entry_points: dict[str, str]) -> Path:
    """Write `module.py` and a dist-info advertising `entry_points` {group: 'name = mod:obj'}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = []
    for group, entry in entry_points.items():
        lines += [f"[{group}]", entry, ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return root
