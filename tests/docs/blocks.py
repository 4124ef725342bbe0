"""The fenced code blocks of the README and the documentation pages, and how they run.

A block runs by its language: `python` in a fresh namespace, `bash` (and `sh`, `shell`) line by
line as shell commands, `console` its `$ ` lines; `toml` must parse; other languages (`text`)
are shown, not run. The line before a block may hold one directive:

    <!-- not-run: REASON -->   not run (the reason is required)
    <!-- slow -->              run only with `pytest -m slow`, alone in a directory of its own
    <!-- file: NAME -->        written to NAME in the page's directory before the blocks after it

A page's blocks run in order in one temporary directory that holds a copy of `examples/`, so a
block can use what an earlier one wrote (a run directory, a suite file).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\S*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(not-run|slow|file)\s*(?::\s*(.*?))?\s*-->$")
RUNS = {"python", "bash", "sh", "shell", "console"}
SHOWN = {"text", "toml", "json", "yaml", "html", "markdown", "diff"}
# commands that change the machine or the checkout: a block holding one must be marked not-run
REFUSED = ("pip ", "python -m pip ", "git ", "sudo ", "rm -rf /")
COMMAND_TIMEOUT = 300


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    directive: str | None = None  # "not-run", "slow" or "file"
    argument: str = ""  # the reason, or the file name

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNS and self.directive not in ("not-run", "slow")


def pages() -> list[str]:
    """The README and every documentation page (the generated reports under docs/results/ are
    outputs of runs, not documentation source)."""
    docs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")
                  if "results" not in p.relative_to(ROOT / "docs").parts[:1])
    return ["README.md", *docs]


def blocks(page: str, text: str | None = None) -> list[Block]:
    """The fenced blocks of a page (or of `text`, named `page`), with the directive on the line
    before each."""
    lines = ((ROOT / page).read_text() if text is None else text).splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        if end is None:
            raise ValueError(f"{page}:{i + 1}: a code block that is never closed")
        directive, argument = None, ""
        before = lines[i - 1].strip() if i > 0 else ""
        if before.startswith("<!--"):
            match = DIRECTIVE.match(before)
            if not match:
                raise ValueError(f"{page}:{i}: {before!r} before a code block is not a directive "
                                 "(<!-- not-run: REASON -->, <!-- slow -->, <!-- file: NAME -->)")
            directive, argument = match.group(1), (match.group(2) or "").strip()
        found.append(Block(page, i + 1, opening.group(1), "\n".join(lines[i + 1:end]) + "\n",
                           directive, argument))
        i = end + 1
    return found


def check(block: Block) -> None:
    """What every block must be, run or not: a language, and a directive with its argument."""
    if not block.lang:
        raise ValueError(f"{block.where}: a code block needs a language (```python, ```bash, "
                         "```toml, ```text, ...)")
    if block.lang not in RUNS | SHOWN:
        raise ValueError(f"{block.where}: unknown language {block.lang!r}")
    if block.directive in ("not-run", "file") and not block.argument:
        what = "a reason" if block.directive == "not-run" else "a file name"
        raise ValueError(f"{block.where}: <!-- {block.directive}: ... --> needs {what}")
    if block.lang == "toml":
        tomllib.loads(block.code)


def commands(block: Block) -> list[str]:
    """The shell commands of a bash or console block (continuation lines joined)."""
    if block.lang == "console":
        text = "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))
    else:
        text = block.code
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Result:
    block: Block
    namespace: dict[str, Any] = field(default_factory=dict)  # python blocks
    output: str = ""  # what the block printed


def prepare(directory: Path) -> Path:
    """A directory to run a page in: a copy of examples/."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", directory / "examples", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return directory


@contextlib.contextmanager
def _registries_kept() -> Any:
    """What a block registers (a plugin estimator) does not outlive it."""
    from estibench import estimators
    from estibench.benchmarks import objectives

    saved = [(r, dict(r._factories)) for r in (estimators.registry, objectives.registry)]
    try:
        yield
    finally:
        for registry, factories in saved:
            registry._factories.clear()
            registry._factories.update(factories)


def run_python(block: Block, directory: Path) -> Result:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    printed = io.StringIO()
    here = Path.cwd()
    os.chdir(directory)
    try:
        with _registries_kept(), contextlib.redirect_stdout(printed):
            exec(compile(block.code, block.where, "exec"), namespace)
    finally:
        os.chdir(here)
    return Result(block, namespace, printed.getvalue())


def run_shell(block: Block, directory: Path) -> Result:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    # the estibench of this interpreter, first on the path
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    printed = []
    for command in commands(block):
        if command.startswith(REFUSED):
            raise AssertionError(f"{block.where}: {command!r} changes the machine or the checkout; "
                                 "mark the block <!-- not-run: REASON -->")
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=directory, env=env,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        printed.append(done.stdout)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise AssertionError(f"{block.where}: `{command}` exited {done.returncode}:\n{tail}")
    return Result(block, output="".join(printed))


def run_block(block: Block, directory: Path) -> Result:
    """Run one block in `directory` (a `file` directive writes it there first)."""
    check(block)
    if block.directive == "file":
        target = directory / block.argument
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.code)
    if block.lang not in RUNS or block.directive == "not-run":
        return Result(block)
    if block.lang == "python":
        return run_python(block, directory)
    return run_shell(block, directory)


def run_page(page: str, directory: Path) -> list[Result]:
    """Every block of the page that runs by default, in order, in one directory."""
    prepare(directory)
    return [run_block(b, directory) for b in blocks(page) if b.directive != "slow"]
