"""Where a number was measured: commit, versions, device, host, threads."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

REPOSITORY = Path(__file__).resolve().parents[2]


def _git(*args: str, cwd: Path | None = None) -> str | None:
    """Output of `git args...` in `cwd` (this package's repository by default), or None without
    git or outside a checkout."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd or REPOSITORY, capture_output=True, text=True, timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit() -> str | None:
    """HEAD of the checkout this package was imported from; None when that directory is not the
    top of a checkout (installed into site-packages, perhaps inside some other repository)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != REPOSITORY.resolve():
        return None
    return _git("rev-parse", "HEAD")


def changed_files(root: Path | None = None) -> list[str] | None:
    """The tracked files of the checkout at `root` (this package's by default) with uncommitted
    changes (untracked files left out); None without git or outside a checkout."""
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    # "XY path" lines, X possibly blank (and the output is stripped): the path follows the code
    return None if status is None else [line.split(maxsplit=1)[1]
                                        for line in status.splitlines() if line.strip()]


def cpu_name() -> str:
    """The CPU model ('model name' in /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_name(device: torch.device | str = "cpu") -> str:
    """A human name for `device`: the GPU's name for CUDA, the CPU model otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def machine_load() -> dict[str, Any]:
    """How busy the machine is now, to record beside a timing.

    load_1min: the 1-minute load average (NaN where the OS has none); cpu_count: logical CPUs;
    runnable_threads: other threads runnable right now (Linux /proc/loadavg, this one excluded;
    -1 where unknown); busy: the load exceeds the CPU count, so timings are slower than the
    machine's own speed (contention, not the code).
    """
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    cpus = os.cpu_count() or 1
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1
    except (OSError, IndexError, ValueError):
        running = -1
    return {"load_1min": load, "cpu_count": cpus, "runnable_threads": running,
            "busy": bool(load > cpus)}


def environment() -> dict[str, Any]:
    """The environment every stored figure records.

    Keys: estibench (the installed version), commit (None without git or when the package does
    not run from a checkout), dirty (tracked files modified; None when commit is None), torch,
    python, cuda (torch's CUDA
    version or None), device (the GPU's name when CUDA is available, else the CPU model), host,
    threads (torch's intra-op threads), platform.
    """
    commit = _commit()
    changed = changed_files() if commit else None
    cuda = torch.cuda.is_available()
    return {
        "estibench": _version(),
        "commit": commit,
        "dirty": None if changed is None else bool(changed),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda,
        "device": device_name("cuda" if cuda else "cpu"),
        "host": platform.node(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }


def _version() -> str | None:
    """The installed estibench's version (a wheel install has no commit to record)."""
    try:
        return metadata.version("estibench")
    except metadata.PackageNotFoundError:
        return None


__all__ = ["cpu_name", "device_name", "environment", "machine_load"]
