"""The README's promises: CI runs exactly its commands, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def test_readme_training_loop_example_runs():
    code = _block_after("Use an estimator in your own training loop", "python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert out.loss.shape == (32,) and out.value.isfinite().all()
