"""The layers contract: imports point down the ladder, and nothing imports the old top-level names.

From the top: the CLI, the root package (`run`, `get`, progress), reports, then the harness, the
claims and the regression tooling (side by side, independent of each other), results, suites,
metrics, objectives, and at the bottom the estimators and the data, each usable alone. An import
of a module on a higher rung, or of a sibling on the same rung, fails this test; so does one that
closes a cycle between subpackages, since that needs an upward edge. Lazy imports inside
functions count as much as top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the module name it installs as
FOLDERS = {"estibench": "estibench", "estimators": "estibench.estimators",
           "benchmarks": "estibench.benchmarks", "reports": "estibench.reports"}
# rungs from the top; the components on one rung may not import each other
LADDER: list[tuple[str, ...]] = [
    ("estibench.cli",),
    ("estibench",),
    ("estibench.reports",),
    ("estibench.benchmarks.harness", "estibench.benchmarks.claims",
     "estibench.benchmarks.regression"),
    ("estibench.benchmarks.results",),
    ("estibench.benchmarks.suites",),
    ("estibench.benchmarks.metrics",),
    ("estibench.benchmarks.objectives",),
    ("estibench.estimators", "estibench.benchmarks.data"),
]
# packages that only hold their subpackages (their __init__ may import nothing of estibench)
CONTAINERS = ("estibench.benchmarks",)


def component(module: str) -> tuple[int, str] | None:
    """(rung, component) of an estibench module: the longest component that prefixes it."""
    best: tuple[int, str] | None = None
    for rung, names in enumerate(LADDER):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                    best is None or len(name) > len(best[1])):
                best = (rung, name)
    return best


def sources() -> dict[str, tuple[Path, str]]:
    """Every module of the distribution: name -> (file, source)."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "microbench" in parts:  # pytest files run from the checkout, not a package
                continue
            name = ".".join([package, *(p for p in parts if p != "__init__")])
            out[name] = (path, path.read_text())
    return out


def imports(module: str, source: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported name) for every import in `source`, relative ones resolved; `from a
    import b` gives a.b (a submodule or a name in a: both live in a's component)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def violations(modules: dict[str, tuple[Path, str]]) -> list[str]:
    """Upward or sideways imports, and imports of the old top-level names."""
    out = {}
    for module, (path, source) in modules.items():
        here = component(module)
        for line, target in imports(module, source, path.name == "__init__.py"):
            where = f"{path}:{line}"
            head = target.split(".")[0]
            there = component(target) if head == "estibench" else None
            if head in ("estimators", "benchmarks", "reports"):
                out.setdefault(where, f"{where} imports {target}: installed, it is "
                                      f"estibench.{target}")
            elif there is None or (here is not None and there[1] == here[1]):
                continue  # outside estibench, or within one component
            elif module in CONTAINERS:
                out.setdefault(where, f"{where} imports {target}: {module} only holds "
                                      "subpackages")
            elif here is not None and there[0] <= here[0]:
                side = "beside" if there[0] == here[0] else "above"
                out.setdefault(where, f"{where}: {here[1]} imports {target}, which is {side} "
                                      f"it ({there[1]})")
    return list(out.values())


def test_imports_point_down_the_ladder():
    assert violations(sources()) == []


def test_every_module_has_a_rung():
    unplaced = [m for m in sources() if component(m) is None and m not in CONTAINERS]
    assert unplaced == []


@pytest.mark.parametrize("module, line, rule", [
    ("estibench.benchmarks.metrics.x", "from estibench.benchmarks.harness import cell", "above"),
    ("estibench.benchmarks.claims.x", "import estibench.benchmarks.regression.tracking",
     "beside"),
    ("estibench.estimators.x", "    from estibench.reports import figures", "above"),
    ("estibench.reports.x", "from benchmarks.results import store", "installed"),
    ("estibench.benchmarks.suites.x", "from ..results import store", "above"),
])
def test_the_contract_catches_a_bad_import(module, line, rule):
    modules = sources()
    source = f"def f():\n{line}\n" if line.startswith(" ") else line + "\n"
    modules[module] = (Path(f"{module.replace('.', '/')}.py"), source)
    found = [v for v in violations(modules) if module.replace(".", "/") in v]
    assert len(found) == 1 and rule in found[0], found
