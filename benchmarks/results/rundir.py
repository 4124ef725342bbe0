"""Run directories: one suite each, created atomically, used by one run at a time.

- A new directory under `runs/` is made with a plain `mkdir` (no `exist_ok`): two runs started
  in the same second cannot share one; the loser takes the next suffix.
- Its name comes from the suite's name reduced to letters, digits, `.`, `_` and `-`, so a name
  such as `../../x` or an absolute path cannot lead outside `runs/`.
- A run holds an OS lock (`flock`) on `RUN_DIR/.lock` while it works; the kernel drops it when
  the process exits or dies, so a second run of the same directory is refused, never stale. A
  filesystem without file locks (some network mounts) is refused with what to do: a run
  directory on a local disk.
- The directory belongs to the suite recorded in `suite.json`. Its identity is that suite with
  the data's location replaced by the SHA-256 of the data's content (`identity.json`): the same
  data at a new path is the same experiment, anything else is refused with what differs. The
  suite's `[cluster]` table (what array tasks ask for) is recorded but is not identity: a run
  resumed with other resources measures the same cells.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from estibench.benchmarks.data.cache import open_data
from estibench.benchmarks.suites.schema import (
    ClusterSpec,
    Suite,
    SuiteError,
    error_lines,
    parse_suite,
)

SUITE_FILENAME = "suite.json"
IDENTITY_FILENAME = "identity.json"
LOCK_FILENAME = ".lock"
RUNS_ROOT = Path("runs")
MAX_NAME_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Fields that do not change what a suite measures: its prose, and what its tasks ask of a cluster.
_NOT_IDENTITY = ("description", "cluster", "cell_timeout")


class RunDirError(SuiteError):
    """A run directory that cannot be used for this run (bad input: exit 2, with the reason)."""


def safe_name(name: str) -> str:
    """`name` as one path component: unsafe runs become '-', no leading dots, at most 64 chars."""
    cleaned = _UNSAFE.sub("-", name).lstrip(".-")[:MAX_NAME_CHARS].rstrip(".-")
    return cleaned or "suite"


def data_sha256(data: Mapping[str, Any]) -> str:
    """SHA-256 of the data a suite's data section reads (both splits' grey levels and shapes),
    wherever it was read from. Loads it (`DataError` if it cannot); cached per process."""
    return _digest(json.dumps(dict(data), sort_keys=True))


@functools.lru_cache(maxsize=4)
def _digest(data_json: str) -> str:
    digest = hashlib.sha256()
    for split in open_data(json.loads(data_json)):
        x = split.intensities.contiguous()
        digest.update(repr(tuple(x.shape)).encode())
        digest.update(x.numpy().tobytes())
    return digest.hexdigest()


def identity(suite: Suite, data_digest: str) -> dict[str, Any]:
    """What makes two suites the same experiment: everything but the data path and the prose."""
    dump = suite.model_dump()
    for key in _NOT_IDENTITY:
        dump.pop(key, None)
    dump["data"] = {k: v for k, v in dump["data"].items() if k != "path"}
    dump["data"]["sha256"] = data_digest
    return dump


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}


def differences(stored: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> list[str]:
    """'field: stored value there, new value here' for each leaf that differs (first `limit`)."""
    a, b = _leaves(stored), _leaves(new)
    missing = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        old, now = a.get(key, missing), b.get(key, missing)
        if old != now:
            shown = ["(absent)" if v is missing else repr(v) for v in (old, now)]
            lines.append(f"{key}: {shown[0]} in the run directory, {shown[1]} here")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def stored_suite(run_dir: Path) -> Suite:
    """The suite recorded in `run_dir/suite.json`; `SuiteError` if missing or unreadable."""
    path = run_dir / SUITE_FILENAME
    if not path.is_file():
        raise RunDirError(f"{str(run_dir)!r} has no {SUITE_FILENAME} (is it a run directory "
                          "made by estibench run?)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{str(path)!r} is not valid JSON ({err}); the run directory is "
                          "damaged: start a new one") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{str(path)!r} does not hold a suite (a JSON object)")
    return parse_suite(raw, repr(str(path)))


def stored_cluster(run_dir: Path) -> ClusterSpec:
    """The `[cluster]` table recorded in `run_dir/suite.json` (empty where the suite has none);
    `RunDirError` if it is missing or damaged. Cheaper than `stored_suite`: nothing else is
    validated."""
    path = run_dir / SUITE_FILENAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{str(run_dir)!r} has no {SUITE_FILENAME} (is it a run directory "
                          "made by estibench run?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{str(path)!r} cannot be read ({err}); the run directory is "
                          "damaged: start a new one") from None
    table = raw.get("cluster") if isinstance(raw, dict) else None
    try:
        return ClusterSpec.model_validate(table or {})
    except ValidationError as err:
        raise RunDirError(f"{str(path)!r}: its [cluster] table is damaged: "
                          + "; ".join(error_lines(err))) from None


def stored_data_sha256(run_dir: Path) -> str | None:
    """The data digest recorded for `run_dir`, or None (a run made before digests existed)."""
    path = run_dir / IDENTITY_FILENAME
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["data_sha256"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise RunDirError(f"{str(path)!r} is damaged ({err}); start a new run "
                          "directory") from None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _make_new(root: Path, name: str) -> Path:
    """runs/<name>-<timestamp>[-n]/, created here and now (never one that existed)."""
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"cannot find a free run directory name under {str(root)!r}")


def _lock(run_dir: Path) -> IO[str]:
    """Take the run directory's lock (returned open: closing it, or dying, releases it)."""
    lock = open(run_dir / LOCK_FILENAME, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise RunDirError(f"run directory {str(run_dir)!r} is in use by another estibench "
                          f"run (pid {holder}); wait for it to finish") from None
    except OSError as err:  # ENOLCK, EOPNOTSUPP, ENOSYS: a filesystem without file locks
        lock.close()
        raise RunDirError(
            f"cannot lock the run directory {str(run_dir)!r}: its filesystem does not support "
            f"file locks ({err.strerror or err}), which keep a second run out of it; put the "
            "run directory on a local disk (estibench run --out DIR; to resume a run from "
            "there, copy its directory to a local disk first)") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def running_pid(run_dir: Path) -> str | None:
    """The pid written by a run that holds `run_dir`'s lock now, else None (no run, or a
    filesystem without locks: nothing can be told)."""
    path = Path(run_dir) / LOCK_FILENAME
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return probe.read().strip() or "unknown"
            except OSError:
                return None
            fcntl.flock(probe, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def _check_same(run_dir: Path, suite: Suite, data_digest: str, resuming: bool) -> bool:
    """Refuse a different suite; returns whether the recorded files must be (re)written."""
    stored = stored_suite(run_dir)
    digest = stored_data_sha256(run_dir)
    if digest is None:  # a run from before digests: digest the data its suite names
        digest = data_sha256(stored.data.model_dump())
    diff = differences(identity(stored, digest), identity(suite, data_digest))
    if diff:
        what = ("cannot resume it with a different suite (resume needs the same suite)"
                if resuming else "it belongs to a different suite: give a new --out, or "
                "--resume it with the same suite")
        raise RunDirError(f"run directory {str(run_dir)!r}: {what}; differences: "
                          + "; ".join(diff))
    return (stored.data.path != suite.data.path or stored_data_sha256(run_dir) is None
            or stored.cluster != suite.cluster)  # a new [cluster] table is recorded


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """OSError (read-only filesystem, no permission, full disk) as a RunDirError naming `where`."""
    try:
        yield
    except OSError as err:
        raise RunDirError(f"cannot write the run directory {str(where)!r}: "
                          f"{err.strerror or err}") from None


@contextmanager
def claim(run_dir: Path | None, suite: Suite, data_digest: str, *, resuming: bool = False,
          root: Path = RUNS_ROOT) -> Iterator[Path]:
    """The run directory for `suite` (whose data has `data_digest`), locked for the duration:
    a new one under `root` when `run_dir` is None, else `run_dir` (created if missing), which
    must hold the same suite or nothing."""
    with _writing(run_dir if run_dir is not None else root):
        if run_dir is None:
            run_dir = _make_new(root, suite.name)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(run_dir)
    try:
        with _writing(run_dir):
            if (run_dir / SUITE_FILENAME).exists():
                write = _check_same(run_dir, suite, data_digest, resuming)
            else:
                others = [p.name for p in run_dir.iterdir() if p.name != LOCK_FILENAME]
                if others:
                    raise RunDirError(f"--out {str(run_dir)!r} is not empty and not a run "
                                      f"directory (it holds {', '.join(sorted(others)[:3])}); "
                                      "give a new or empty directory")
                write = True
            if write:
                _write_atomically(run_dir / SUITE_FILENAME,
                                  json.dumps(suite.model_dump(), indent=2))
                _write_atomically(run_dir / IDENTITY_FILENAME,
                                  json.dumps({"data_sha256": data_digest}, indent=2))
        yield run_dir
    finally:
        lock.close()
