"""Regression tracking over commits with asv: record commits one by one, gate two of them.

    python -m estibench.benchmarks.regression record --commits 3   # the last 3 commits of HEAD
    python -m estibench.benchmarks.regression record A..B          # every commit in a git range
    python -m estibench.benchmarks.regression gate BASE HEAD --factor 1.5  # exit 1: regression
    python -m estibench.benchmarks.regression history --out history.html  # offline page

`record` never builds an environment: for each commit (oldest first) it checks the commit out
into a temporary `git worktree add --detach`, puts that worktree first on the benchmark
processes' path (ASV_PYTHONPATH; asv discards PYTHONPATH) so that `estibench` and its
subpackages are that commit's code (ESTIBENCH_CODE names the worktree: the suite checks that it
measures it, and ignores an editable install's fallback for modules the commit lacks), and runs
`asv run -E existing:<python> --set-commit-hash <sha>` with the repository's asv.conf.json.
The benchmark suite (benchmarks/regression/asv) is the one of the current checkout for every
commit, as asv does with the environments it builds, so old commits are measured by today's
benchmarks and their results are comparable. Results land in the config's `results_dir`
(.asv/results/<machine>/<sha8>-<env>.json); `asv publish` turns them into HTML.

`gate` reads the two commits' result files (asv's format version 2: `result_columns` names the
fields of each benchmark's row; `result` holds one value per parameter combination, in the
row-major order of `params`; NaN = skipped, null = failed) and compares every benchmark value:

- `time_` benchmarks and tracked values on a linear scale (seconds, bytes, nats, a norm): worse
  when head > factor x base (for base <= 0: when head - base > (factor - 1) x |base|); for
  timings asv stores a 99% confidence interval, and a change whose two intervals overlap is
  reported as "noise", not flagged (asv compare's own test without raw samples); a tracked
  wall-clock time (a `track_` benchmark in seconds, e.g. time per sample) has no interval, so
  a change of it is reported as "unverified", not flagged: the `time_` benchmarks of the same
  pair carry the gated timing (`--no-significance` flags both kinds);
- tracked values on a log scale (a `unit` starting with "log", e.g. log10 gradient variance):
  worse when head - base > log10(factor) (a ratio of logarithms means nothing; a difference of
  log10(1.5) = 0.176 is the same 1.5x growth of the variance itself);
- a value measured at base that fails (null) at head is a regression too.

Every value is a cost (asv treats tracked values as lower-is-better). Exit status: 0 no
regression, 1 some regression (the table marks them), 2 bad input (no results for a commit...).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "asv.conf.json"
DEFAULT_FACTOR = 1.5


class RegressionError(Exception):
    """Bad input to `record` or `gate` (missing config, unknown commit, no results)."""


# ------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AsvPaths:
    """The paths an asv.conf.json names, made absolute (relative ones are to its directory)."""

    config: Path
    repo: Path
    results_dir: Path
    html_dir: Path
    benchmark_dir: Path


def _load_json_with_comments(path: Path) -> dict[str, Any]:
    """asv.conf.json may hold whole-line // comments (asv's own template does)."""
    lines = [line for line in path.read_text().splitlines()
             if not line.lstrip().startswith("//")]
    try:
        return json.loads("\n".join(lines))
    except json.JSONDecodeError as error:
        raise RegressionError(f"{path}: not valid JSON: {error}") from error


def load_config(config: str | os.PathLike[str] = DEFAULT_CONFIG) -> AsvPaths:
    path = Path(config).resolve()
    if not path.is_file():
        raise RegressionError(f"asv config {path} not found (give --config PATH)")
    data = _load_json_with_comments(path)
    root = path.parent

    def where(key: str, default: str) -> Path:
        return (root / data.get(key, default)).resolve()

    return AsvPaths(path, where("repo", "."), where("results_dir", "results"),
                    where("html_dir", "html"), where("benchmark_dir", "benchmarks"))


# ---------------------------------------------------------------------------------- git


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RegressionError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve_commit(repo: Path, name: str) -> str:
    """The full sha of `name` (a sha, a prefix, a branch, HEAD~2...)."""
    return git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")


def commits_to_record(repo: Path, spec: str | None = None, count: int | None = None) -> list[str]:
    """Full shas, oldest first: the commits of the git range `spec` ("A..B"), or the last
    `count` commits of HEAD's first-parent history."""
    if (spec is None) == (count is None):
        raise RegressionError("give either a range A..B or --commits N, not both or neither")
    if spec is not None:
        if ".." not in spec:
            return [resolve_commit(repo, spec)]
        out = git(repo, "rev-list", "--reverse", spec)
    else:
        if count is None or count < 1:
            raise RegressionError(f"--commits must be >= 1, got {count}")
        out = git(repo, "rev-list", "--reverse", "--first-parent", f"--max-count={count}",
                  "HEAD")
    shas = out.split()
    if not shas:
        raise RegressionError(f"no commits in {spec!r}")
    return shas


# ------------------------------------------------------------------------------- record


def asv_command(*args: str) -> list[str]:
    """asv run by this interpreter (`python -m asv`), so the asv beside this Python is used."""
    return [sys.executable, "-m", "asv", *args]


def default_machine() -> str:
    """asv's own default machine name: the host name."""
    return platform.node()


def machine_file() -> Path:
    """Where `asv machine` keeps machine descriptions (asv reads it from the home directory)."""
    return Path.home() / ".asv-machine.json"


def ensure_machine(paths: AsvPaths, machine: str) -> None:
    """`asv machine --yes --machine NAME` unless ~/.asv-machine.json already describes NAME."""
    try:
        known = json.loads(machine_file().read_text())
    except (OSError, ValueError):
        known = {}
    if machine in known:
        return
    subprocess.run(asv_command("machine", "--yes", "--machine", machine,
                               "--config", str(paths.config)),
                   check=True, cwd=paths.config.parent, stdout=subprocess.DEVNULL)


def record(
    commits: Sequence[str],
    config: str | os.PathLike[str] = DEFAULT_CONFIG,
    machine: str | None = None,
    python: str | None = None,
    bench: Sequence[str] = (),
) -> dict[str, int]:
    """Run the asv suite on each commit, one at a time, in a temporary worktree of that commit.

    Returns {sha: asv's exit status} (0: every benchmark ran; non-zero: some failed, their
    results are still recorded as failures, or asv could not run at all and there is no result
    file). The worktree is removed afterwards whatever happens.
    """
    paths = load_config(config)
    machine = machine or default_machine()
    python = python or sys.executable
    ensure_machine(paths, machine)
    statuses: dict[str, int] = {}
    for sha in commits:
        sha = resolve_commit(paths.repo, sha)
        with _worktree(paths.repo, sha) as tree:
            env = dict(os.environ)
            env["ASV_PYTHONPATH"] = os.pathsep.join(
                p for p in (str(tree), os.environ.get("ASV_PYTHONPATH", "")) if p)
            # the asv suite checks that it measures this code
            env["ESTIBENCH_CODE"] = str(tree)
            command = asv_command(
                "run", "--config", str(paths.config), "-E", f"existing:{python}",
                "--set-commit-hash", sha, "--machine", machine,
                "--launch-method", "forkserver",
                *[arg for pattern in bench for arg in ("--bench", pattern)],
            )
            print(f"== {sha[:8]} {git(paths.repo, 'log', '-1', '--format=%s', sha)}",
                  flush=True)
            done = subprocess.run(command, cwd=paths.config.parent, env=env)
            statuses[sha] = done.returncode
    return statuses


@contextmanager
def _worktree(repo: Path, sha: str) -> Iterator[Path]:
    """`git worktree add --detach` of `sha` into a temporary directory, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="estibench-asv-"))
    path = parent / sha[:12]
    try:
        git(repo, "worktree", "add", "--detach", str(path), sha)
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


# --------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class Value:
    """One benchmark value: `value` is a float, NaN (skipped) or None (failed)."""

    name: str  # "module.Class.method(param, param)"
    benchmark: str
    value: float | None
    unit: str
    version: str | None
    ci: tuple[float, float] | None = None  # asv's 99% confidence interval (timings only)
    kind: str = "track"  # asv's benchmark type: time, track, mem, peakmem

    @property
    def untested_timing(self) -> bool:
        """A tracked wall-clock time: asv keeps no confidence interval for it."""
        return self.kind == "track" and self.unit == "seconds" and self.ci is None


@dataclass(frozen=True)
class Comparison:
    name: str
    unit: str
    base: float | None
    head: float | None
    change: str
    verdict: str  # worse, better, same, noise, unverified, failed, fixed, new, gone, n/a
    code_changed: bool = False  # the benchmark's own code differs between the two results

    @property
    def regression(self) -> bool:
        return self.verdict in ("worse", "failed")


def _to_float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)  # NaN stays NaN (asv writes skipped as NaN)


def _labels(params: list[list[str]]) -> list[str]:
    if not params:
        return [""]
    return ["(" + ", ".join(p.strip("'\"") for p in combo) + ")" for combo in product(*params)]


def _interval(low: Any, high: Any, i: int) -> tuple[float, float] | None:
    """Entry i of asv's stats_ci_99_a / stats_ci_99_b columns, when both are there."""
    if not (isinstance(low, list) and isinstance(high, list) and i < min(len(low), len(high))):
        return None
    if low[i] is None or high[i] is None:
        return None
    return float(low[i]), float(high[i])


def read_result_file(
    path: Path, info: dict[str, tuple[str, str]] | None = None
) -> dict[str, Value]:
    """Every value of one asv result file, keyed by benchmark name and parameter combination."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RegressionError(f"cannot read asv results {path}: {error}") from error
    if data.get("version") != 2 or "result_columns" not in data:
        raise RegressionError(
            f"{path}: asv results format version {data.get('version')!r}; expected 2 (asv 0.5+)")
    columns = data["result_columns"]
    at = {name: i for i, name in enumerate(columns)}
    info = info or {}
    out: dict[str, Value] = {}
    for benchmark, row in data.get("results", {}).items():
        def field(name: str, row: list[Any] = row) -> Any:
            i = at.get(name)
            return row[i] if i is not None and i < len(row) else None

        results = field("result")
        params = field("params") or []
        labels = _labels(params)
        if results is None:  # the whole benchmark failed
            results = [None] * len(labels)
        if not isinstance(results, list):
            results = [results]
        if len(results) != len(labels):
            raise RegressionError(
                f"{path}: {benchmark} has {len(results)} results for {len(labels)} parameter "
                f"combinations")
        method = benchmark.rsplit(".", 1)[-1]
        kind = info.get(benchmark, ("", method.split("_", 1)[0]))[1]
        unit = info.get(benchmark, ("", ""))[0] or ("seconds" if kind == "time" else "unit")
        low, high = field("stats_ci_99_a"), field("stats_ci_99_b")
        for i, (label, value) in enumerate(zip(labels, results, strict=True)):
            ci = _interval(low, high, i)
            out[benchmark + label] = Value(benchmark + label, benchmark, _to_float(value), unit,
                                           field("version"), ci, kind)
    return out


def benchmark_info(results_dir: Path) -> dict[str, tuple[str, str]]:
    """{benchmark: (unit, type)} from asv's benchmarks.json (written by `asv run` beside the
    machine folders); the type falls back on the method's prefix (time_, track_...)."""
    path = results_dir / "benchmarks.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {name: (entry.get("unit", ""),
                   entry.get("type") or name.rsplit(".", 1)[-1].split("_", 1)[0])
            for name, entry in data.items() if isinstance(entry, dict)}


def find_result_file(results_dir: Path, sha: str, machine: str | None) -> Path:
    """The result file of commit `sha` (full or a prefix of >= 7): on `machine`, or on the one
    machine that has it."""
    if not results_dir.is_dir():
        raise RegressionError(f"no asv results directory {results_dir}: record commits first")
    machines = [machine] if machine else sorted(
        d.name for d in results_dir.iterdir() if d.is_dir())
    found: list[Path] = []
    for name in machines:
        for path in sorted((results_dir / name).glob("*.json")):
            if path.name == "machine.json":
                continue
            try:
                commit = json.loads(path.read_text()).get("commit_hash", "")
            except (OSError, ValueError):
                continue
            if commit.startswith(sha):
                found.append(path)
    if not found:
        where = f"machine {machine!r}" if machine else f"any machine in {results_dir}"
        raise RegressionError(f"no asv results for commit {sha[:12]} on {where}: record it with "
                              f"`python -m estibench.benchmarks.regression record {sha[:12]}`")
    if len(found) > 1:
        listing = ", ".join(str(p.relative_to(results_dir)) for p in found)
        raise RegressionError(f"several result files for commit {sha[:12]} ({listing}): choose "
                              f"one with --machine")
    return found[0]


def is_log_scale(unit: str) -> bool:
    return unit.strip().lower().startswith("log")


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[1] >= b[0] and a[0] <= b[1]


def compare_values(
    base: Value | None, head: Value | None, factor: float, significance: bool = True
) -> Comparison:
    """The verdict for one benchmark value (see the module docstring for the rules)."""
    ref = head or base
    assert ref is not None
    b = None if base is None else base.value
    h = None if head is None else head.value
    name, unit = ref.name, ref.unit

    code_changed = (base is not None and head is not None and base.version is not None
                    and head.version is not None and base.version != head.version)

    def comparison(change: str, verdict: str) -> Comparison:
        return Comparison(name, unit, b, h, change, verdict, code_changed)

    if base is None:
        return comparison("", "new")
    if head is None:
        return comparison("", "gone")
    b_ok = b is not None and not math.isnan(b)
    h_ok = h is not None and not math.isnan(h)
    if b_ok and h is None:
        return comparison("", "failed")
    if not b_ok or not h_ok:
        return comparison("", "fixed" if b is None and h_ok else "n/a")
    assert b is not None and h is not None
    if is_log_scale(unit):
        delta, threshold = h - b, math.log10(factor)
        verdict = "worse" if delta > threshold else "better" if delta < -threshold else "same"
        return comparison(f"{delta:+.3f}", verdict)
    allowed = (factor - 1.0) * abs(b)  # = head > factor x base when base > 0
    if b > 0:
        change, better = f"x{h / b:.2f}", h * factor < b
    else:
        change, better = f"{h - b:+.3g}", b - h > allowed
    verdict = "worse" if h - b > allowed else "better" if better else "same"
    if verdict != "same" and significance:
        if _overlap(base.ci, head.ci):
            verdict = "noise"  # beyond the factor, but asv's 99% intervals overlap
        elif base.untested_timing or head.untested_timing:
            verdict = "unverified"  # a tracked wall-clock time: no interval to test it with
    return comparison(change, verdict)


def compare(
    base: dict[str, Value], head: dict[str, Value], factor: float, significance: bool = True
) -> list[Comparison]:
    names = sorted(set(base) | set(head))
    return [compare_values(base.get(n), head.get(n), factor, significance) for n in names]


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "failed"
    if math.isnan(value):
        return "n/a"
    if unit == "seconds":
        for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g}{suffix}"
    if unit == "bytes":
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")):
            if abs(value) >= scale or scale == 1:
                return f"{value / scale:.3g}{suffix}"
    return f"{value:.4g}"


def format_table(rows: Sequence[Comparison], show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r.verdict not in ("same", "n/a")]
    header = ("", "benchmark", "unit", "base", "head", "change", "verdict")
    lines = [header] + [
        ("!" if r.regression else "", r.name, r.unit, _format(r.base, r.unit),
         _format(r.head, r.unit), r.change, r.verdict + (" *" if r.code_changed else ""))
        for r in shown
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    if any(r.code_changed for r in shown):
        text.append("* the benchmark's code differs between the two results (recorded with "
                    "different suites): compare with care, or record both with one `record`")
    return "\n".join(text)


def gate(
    base: str,
    head: str,
    factor: float = DEFAULT_FACTOR,
    config: str | os.PathLike[str] = DEFAULT_CONFIG,
    machine: str | None = None,
    results_dir: str | os.PathLike[str] | None = None,
    significance: bool = True,
) -> tuple[int, list[Comparison]]:
    """Compare the asv results of commits `base` and `head`: (exit status, comparisons)."""
    if not (factor > 1.0 and math.isfinite(factor)):
        raise RegressionError(f"--factor must be a finite number > 1, got {factor}")
    if results_dir is None:
        paths = load_config(config)
        directory = paths.results_dir
        base, head = (_full_sha(paths.repo, c) for c in (base, head))
    else:
        directory = Path(results_dir)
    info = benchmark_info(directory)
    base_file = find_result_file(directory, base, machine)
    head_file = find_result_file(directory, head, machine)
    if machine is None and base_file.parent != head_file.parent:
        raise RegressionError(
            f"base and head were recorded on different machines ({base_file.parent.name}, "
            f"{head_file.parent.name}): timings are not comparable; give --machine")
    rows = compare(read_result_file(base_file, info), read_result_file(head_file, info),
                   factor, significance)
    return (1 if any(r.regression for r in rows) else 0), rows


@dataclass(frozen=True)
class Recorded:
    """One recorded commit of a machine: its sha, date (ms since the epoch) and values."""

    sha: str
    date: int
    values: dict[str, Value]


def recorded_commits(results_dir: Path, machine: str | None = None,
                     info: dict[str, tuple[str, str]] | None = None) -> list[Recorded]:
    """Every commit recorded on `machine` (the only machine when None), oldest first."""
    if not results_dir.is_dir():
        raise RegressionError(f"no asv results directory {results_dir}: record commits first")
    machines = [machine] if machine else sorted(
        d.name for d in results_dir.iterdir() if d.is_dir())
    if len(machines) != 1:
        raise RegressionError(f"{results_dir} holds results of {len(machines)} machines "
                              f"({', '.join(machines) or 'none'}); give --machine")
    folder = results_dir / machines[0]
    out = []
    for path in sorted(folder.glob("*.json")):
        if path.name == "machine.json":
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RegressionError(f"cannot read asv results {path}: {error}") from error
        out.append(Recorded(str(data.get("commit_hash", path.stem)), int(data.get("date") or 0),
                            read_result_file(path, info)))
    if not out:
        raise RegressionError(f"no recorded commit in {folder}: record commits first")
    return sorted(out, key=lambda r: r.date)


def history_html(results_dir: Path, machine: str | None = None,
                 factor: float = DEFAULT_FACTOR) -> str:
    """The recorded history as one self-contained HTML page: per benchmark, its value at each
    commit (oldest first) with a sparkline, each change marked with the gate's verdict against
    the commit before. No script, style sheet or font is loaded from anywhere: it works
    offline (asv's own site does not)."""
    import html as escape

    info = benchmark_info(results_dir)
    commits = recorded_commits(results_dir, machine, info)
    shown = machine or next(d.name for d in sorted(results_dir.iterdir()) if d.is_dir())
    names = sorted({name for c in commits for name in c.values})
    head = "".join(f"<th>{escape.escape(c.sha[:8])}</th>" for c in commits)
    rows = []
    for name in names:
        cells, points = [], []
        previous: Value | None = None
        for commit in commits:
            value = commit.values.get(name)
            verdict = ""
            if value is not None and previous is not None:
                verdict = compare_values(previous, value, factor).verdict
            text = "–" if value is None else _format(value.value, value.unit)
            cells.append(f'<td class="{verdict}" title="{verdict}">{escape.escape(text)}</td>')
            if value is not None and value.value is not None and math.isfinite(value.value):
                points.append(value.value)
            previous = value if value is not None else previous
        unit = next((c.values[name].unit for c in commits if name in c.values), "")
        rows.append(f"<tr><th>{escape.escape(name)}<br><small>{escape.escape(unit)}</small>"
                    f"</th><td>{_sparkline(points)}</td>{''.join(cells)}</tr>")
    legend = ("Each value against the commit before it, by the gate's rules at factor "
              f"{factor:g}: <span class='worse'>worse</span>, <span class='better'>better</span>,"
              " <span class='noise'>noise</span> (99% intervals overlap), "
              "<span class='failed'>failed</span>.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>estibench: benchmark history</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.2rem 0.4rem; text-align: right; }}
th {{ text-align: left; background: #f4f4f4; }}
.worse, .failed {{ background: #f8d0d0; }} .better, .fixed {{ background: #d4eed4; }}
.noise, .unverified {{ background: #f4f0d8; }}
</style></head><body>
<h1>Benchmark history</h1>
<p>{len(commits)} commit(s) recorded on {escape.escape(shown)}, oldest first.
{legend}</p>
<table><thead><tr><th>benchmark</th><th>trend</th>{head}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
</body></html>
"""


def _sparkline(values: list[float], width: int = 90, height: int = 18) -> str:
    """An inline SVG polyline of the values (oldest at the left); empty for fewer than two."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="trend">'
            f'<polyline fill="none" stroke="#0072B2" stroke-width="1.5" points="{points}"/>'
            "</svg>")


def _full_sha(repo: Path, name: str) -> str:
    try:
        return resolve_commit(repo, name)
    except RegressionError:
        return name  # not in this repository (results copied from elsewhere): match a prefix


# ----------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m estibench.benchmarks.regression.tracking",
        description="Record commits with asv (existing environment) and gate regressions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("record", help="run the asv suite on each commit, one by one")
    rec.add_argument("range", nargs="?", help="a git range A..B, or one commit")
    rec.add_argument("--commits", type=int, help="the last N commits of HEAD instead of a range")
    rec.add_argument("--machine", help="asv machine name (default: this host's name)")
    rec.add_argument("--python", help="interpreter for `-E existing:PY` (default: this one)")
    rec.add_argument("--bench", "-b", action="append", default=[],
                     help="only benchmarks matching this regex (repeatable)")
    rec.add_argument("--config", default=DEFAULT_CONFIG, help="asv config [asv.conf.json]")

    gat = sub.add_parser("gate", help="exit 1 if HEAD is worse than BASE by more than --factor")
    gat.add_argument("base", help="base commit (sha, prefix or ref)")
    gat.add_argument("head", help="head commit (sha, prefix or ref)")
    gat.add_argument("--factor", type=float, default=DEFAULT_FACTOR,
                     help="allowed ratio head/base (log-scale metrics: log10(factor) difference)"
                          f" [{DEFAULT_FACTOR}]")
    gat.add_argument("--machine", help="machine whose results to compare")
    gat.add_argument("--config", default=DEFAULT_CONFIG, help="asv config [asv.conf.json]")
    gat.add_argument("--results-dir", help="asv results directory (default: from the config)")
    gat.add_argument("--all", action="store_true", help="show unchanged benchmarks too")
    his = sub.add_parser("history", help="write the recorded history as one offline HTML page")
    his.add_argument("--out", default="benchmark-history.html", help="the page to write")
    his.add_argument("--factor", type=float, default=DEFAULT_FACTOR,
                     help=f"the gate's factor for the marks [{DEFAULT_FACTOR}]")
    his.add_argument("--machine", help="machine whose results to show")
    his.add_argument("--config", default=DEFAULT_CONFIG, help="asv config [asv.conf.json]")
    his.add_argument("--results-dir", help="asv results directory (default: from the config)")

    gat.add_argument("--no-significance", dest="significance", action="store_false",
                     help="flag timings beyond the factor even when asv's 99%% confidence "
                          "intervals of base and head overlap")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "record":
            paths = load_config(args.config)
            commits = commits_to_record(paths.repo, args.range, args.commits)
            statuses = record(commits, args.config, machine=args.machine, python=args.python,
                              bench=args.bench)
            machine = args.machine or default_machine()
            missing = []
            for sha in statuses:
                try:
                    find_result_file(paths.results_dir, sha, machine)
                except RegressionError:
                    missing.append(sha[:8])
            failing = [sha[:8] for sha, code in statuses.items()
                       if code != 0 and sha[:8] not in missing]
            print(f"recorded {len(statuses) - len(missing)} of {len(statuses)} commit(s) into "
                  f"{paths.results_dir / machine}")
            if failing:
                print(f"some benchmarks failed on {', '.join(failing)} (recorded as failed; "
                      f"see asv's output above)")
            if missing:
                print(f"no results for {', '.join(missing)}: asv could not run there")
            print(f"next: asv publish --config {args.config}  (HTML in {paths.html_dir})")
            return 1 if missing else 0
        if args.command == "history":
            directory = (Path(args.results_dir) if args.results_dir
                         else load_config(args.config).results_dir)
            Path(args.out).write_text(history_html(directory, args.machine, args.factor),
                                      encoding="utf-8")
            print(f"history: {args.out}")
            return 0
        status, rows = gate(args.base, args.head, args.factor, args.config, args.machine,
                            args.results_dir, args.significance)
        print(format_table(rows, show_all=args.all))
        worse = sum(r.regression for r in rows)
        unverified = sum(r.verdict == "unverified" for r in rows)
        print(f"\n{worse} regression(s) beyond x{args.factor:g} (log-scale metrics: "
              f"{math.log10(args.factor):+.3f} in log10) among {len(rows)} values"
              + (f"; {unverified} tracked wall-clock change(s) reported, not gated"
                 if unverified else ""))
        return status
    except RegressionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
