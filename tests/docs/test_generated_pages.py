"""The parts of the site generated from the code (docs/hooks.py) cover the code: every estimator,
objective and command; the API page documents every public name; the nav holds every page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer
import yaml

from tests.docs import blocks

ROOT = blocks.ROOT


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


def _markers() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for page in blocks.pages()[1:]:
        for name in hooks.MARKER.findall((ROOT / page).read_text()):
            found.setdefault(name, []).append(page)
    return found


def test_every_generator_has_a_page_and_every_marker_a_generator() -> None:
    assert sorted(_markers()) == sorted(hooks.GENERATORS)


def test_the_estimator_table_has_every_built_in_estimator() -> None:
    from estibench.benchmarks.harness.catalogue import builtin, describe_estimators

    table = hooks.estimators_table()
    rows = [line for line in table.splitlines()[2:]]
    names = [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]
    assert names == [r.name for r in describe_estimators() if builtin(r.name)]
    assert all(row.count(" | ") == 5 for row in rows)  # six cells: no stray pipe
    assert "`u2g` (`disarm`)" in table and "`zgr` (`reinmax` at temperature=1.0)" in table


def test_the_objective_table_has_every_objective() -> None:
    from estibench.benchmarks import objectives

    table = hooks.objectives_table()
    names = re.findall(r"^\| `([^`]+)`", table, re.M)
    assert names == objectives.available()


def test_the_cli_reference_has_every_command_and_option() -> None:
    from estibench.cli.app import app

    reference = hooks.cli_reference()

    def walk(command, prefix):
        yield prefix, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{prefix} {name}")

    for path, command in walk(typer.main.get_command(app), "estibench"):
        assert f"`{path}`" in reference, path
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert f"`{opt}" in reference, f"{path} {opt}"


def test_an_unknown_marker_fails_the_build() -> None:
    assert hooks.expand("a\n<!-- generated: cli -->\nb").startswith("a\n## `estibench`")
    with pytest.raises(ValueError, match="unknown generated part 'estimatorz'"):
        hooks.expand("<!-- generated: estimatorz -->", "page.md")


def test_the_api_page_documents_every_public_name() -> None:
    import estibench

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    documented = re.findall(r"^::: (\S+)", page, re.M)
    for name, module in estibench._PUBLIC.items():
        target = module if module.endswith(f".{name}") else f"{module}.{name}"
        assert target in documented or f"`estibench.{name}`" in page, name


def test_mkdocstrings_sees_the_installed_layout(tmp_path: Path) -> None:
    package = hooks.mirror_package(tmp_path) / "estibench"
    assert (package / "estimators").resolve() == ROOT / "estimators"
    assert (package / "benchmarks").resolve() == ROOT / "benchmarks"
    assert (package / "__init__.py").resolve() == ROOT / "estibench" / "__init__.py"
    hooks.mirror_package(tmp_path)  # again: nothing to change


def _nav_pages(nav) -> list[str]:
    found = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += _nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_the_nav_holds_every_page() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    nav = _nav_pages(config["nav"])
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == on_disk
