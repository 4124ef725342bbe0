"""mkdocs hook: the parts of the documentation generated from the code when the site is built.

A page line that is exactly a marker is replaced by the text its generator returns:

    <!-- generated: estimators -->   every built-in estimator (the registry, as `estibench list
                                     estimators` shows it): family, applies to, bias, cost, options
    <!-- generated: objectives -->   every built-in objective (as `estibench list objectives`)
    <!-- generated: cli -->          every command and option of the `estibench` app

So these pages cannot drift from the code. An unknown marker fails the build.
tests/docs/test_generated_pages.py runs the generators.

It also lays out the package for mkdocstrings: the folders `estimators/`, `benchmarks/` and
`reports/` install inside `estibench` (package-dir in pyproject.toml), which static analysis
cannot follow, so `build/api-source/estibench/` mirrors the installed tree with links to the
sources, and mkdocs.yml points mkdocstrings there.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
API_SOURCE = ROOT / "build" / "api-source"
# the installed package: estibench/ with the root's three folders inside it
PACKAGE = {"estimators": "estimators", "benchmarks": "benchmarks", "reports": "reports"}

MARKER = re.compile(r"^<!-- generated: ([a-z_-]+) -->$", re.M)


def _cell(text: Any) -> str:
    """Text for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _code(text: str) -> str:
    """Inline code for a table cell (a backslash-escaped pipe would show inside backticks)."""
    return f"<code>{html.escape(text).replace('|', '&#124;')}</code>"


def _options_cell(options: list[Any]) -> str:
    return "<br>".join(_code(o.text()) for o in options) or "-"


def estimators_table() -> str:
    """The built-in estimators, one row each, from the registry."""
    from estibench import estimators
    from estibench.benchmarks.harness.catalogue import builtin, describe_estimators

    aliases = estimators.registry.aliases()
    lines = ["| name | family | applies to | unbiased | f evaluations per sample | options |",
             "|---|---|---|---|---|---|"]
    for row in describe_estimators():
        if row.family == "broken" or not builtin(row.name):
            continue
        name = f"`{row.name}`"
        if row.name in aliases:
            target, fixed = aliases[row.name]
            at = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
            name += f" (`{target}`{' at ' + at if at else ''})"
        lines.append(f"| {name} | {_cell(row.family)} | {_cell(row.applies_to)} | "
                     f"{_cell(row.unbiased)} | {_cell(row.evaluations_per_sample)} | "
                     f"{_options_cell(row.options)} |")
    return "\n".join(lines) + "\n"


def objectives_table() -> str:
    """The built-in objectives, one row each, from the registry."""
    from estibench.benchmarks.harness.catalogue import describe_objectives

    lines = ["| name | latent q(z\\|x) | exact (default options) | options |",
             "|---|---|---|---|"]
    for row in describe_objectives():
        lines.append(f"| `{row.name}` | {_cell(row.latent)} | {_cell(row.exact)} | "
                     f"{_options_cell(row.options)} |")
    return "\n".join(lines) + "\n"


def cli_reference() -> str:
    """Every command of the `estibench` app with its arguments and options (typer's docs)."""
    import typer
    from typer.cli import get_docs_for_click

    from estibench.cli.app import app

    command = typer.main.get_command(app)
    docs = get_docs_for_click(obj=command, ctx=typer.Context(command), name="estibench",
                              indent=1)
    return docs.strip() + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "estimators": estimators_table,
    "objectives": objectives_table,
    "cli": cli_reference,
}


def expand(markdown: str, where: str = "page") -> str:
    """The page with every marker replaced by its generated text."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated part {name!r}; "
                             f"known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def mirror_package(target: Path = API_SOURCE) -> Path:
    """`target/estibench/`: links to the files of estibench/ and to the mapped folders."""
    package = target / "estibench"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {p.name: p for p in (ROOT / "estibench").iterdir() if p.name != "__pycache__"}
    wanted |= {name: ROOT / folder for name, folder in PACKAGE.items()}
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.resolve() != wanted[link.name]:
            link.unlink()
    for name, source in wanted.items():
        if not (package / name).is_symlink():
            (package / name).symlink_to(source)
    return target


@event_priority(100)  # before mkdocstrings reads its paths
def on_config(config: Any, **kwargs: Any) -> Any:
    mirror_package()
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    return expand(markdown, page.file.src_path)
