"""The real `estibench` CLI as a subprocess, for the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "estibench.cli.app"]


def cli(*args: str, env: dict | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    """`estibench ARGS` with this interpreter, output captured, figures drawn off-screen; `env`
    adds to the environment."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
