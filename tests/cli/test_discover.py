"""Finding what exists: `estibench list`, `suite schema | show`, `run --dry-run`, start-up cost.

Through the real CLI as a subprocess.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from jsonschema import Draft202012Validator

from estibench import estimators
from estibench.benchmarks import objectives
from estibench.benchmarks.harness.catalogue import (
    BUILTIN_EVALUATIONS,
    ENUMERATES,
    builtin,
    describe_estimators,
    dry_run_text,
    evaluations,
    options,
)
from estibench.benchmarks.suites.reference import SECTIONS, reference_markdown
from estibench.benchmarks.suites.schema import SUITES_DIR, Suite, load_suite
from tests.cli_support import cli

ROOT = Path(__file__).resolve().parents[2]


def test_list_estimators_prints_family_support_bias_evaluations_and_options():
    result = cli("list", "estimators")
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}
    assert set(estimators.available()) <= set(rows)
    assert "score_function" in rows["reinforce"] and "yes" in rows["reinforce"]
    reinforce = _cells(result.stdout, "reinforce")
    # the Literal's allowed values, and the option values that make the estimator biased
    assert ("('none' | 'ema' | 'loo' | 'grpo' | 'drgrpo' | 'drgrpo_rescaled')"
            in reinforce[5]), reinforce
    assert reinforce[3] == "yes; no with baseline='grpo', baseline='drgrpo'", reinforce
    assert "no" in rows["gumbel_softmax"].split("│")[4]
    assert ENUMERATES in rows["exact"] and "max_configurations=4096" in rows["exact"]


def _cells(table: str, name: str) -> list[str]:
    """The cells of `name`'s row of a printed table, each wrapped cell's lines joined."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("│") and line.split("│")[1].strip() == name)
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("│") or line.split("│")[1].strip():
            break
        block.append(line)
    columns = zip(*(line.split("│")[1:-1] for line in block), strict=True)
    return [" ".join(part.strip() for part in column if part.strip()) for column in columns]


def test_list_objectives_prints_latent_and_options():
    result = cli("list", "objectives")
    assert result.returncode == 0, result.stderr
    assert "Independent(OneHotCategorical)" in result.stdout
    assert "categories=8" in result.stdout and "kl='analytic'" in result.stdout


def test_options_come_from_the_signature():
    for name in estimators.available():
        factory = estimators.registry.factory(name)
        listed = [o.name for o in options(factory)]
        assert listed == list(inspect.signature(factory).parameters), name
    baseline = next(o for o in options(estimators.registry.factory("reinforce"))
                    if o.name == "baseline")
    assert baseline.default == "none" and set(baseline.allowed) == {
        "none", "ema", "loo", "grpo", "drgrpo", "drgrpo_rescaled"}


def test_evaluations_are_counted_by_a_dry_run():
    toy = objectives.get("bernoulli_toy", dims=2)
    assert evaluations(toy, estimators.get("reinforce", baseline="loo"), 3) == 3
    # the toy's batch is independent Bernoullis: 2 configurations each, whatever S
    assert evaluations(toy, estimators.get("exact"), 3) == evaluations(
        toy, estimators.get("exact"), 6) == 2
    vae = objectives.get("categorical_vae", variables=2, categories=3, hidden=8)
    assert evaluations(vae, estimators.get("exact"), 1) == 9
    # MuProp evaluates f at its S samples and once at the mean-field point: S + 1, which is
    # neither S per sample nor a count fixed by the support
    muprop = estimators.get("muprop")
    assert [evaluations(toy, muprop, s) for s in (3, 6)] == [4, 7]
    assert dry_run_text("muprop") == "1 + 1 per estimate"


# The listed counts that grow with the latent: D variables of K categories each.
PER_VARIABLE = {"D x K": lambda d, k: d * k, "4 D": lambda d, k: 4 * d}


def test_listed_evaluations_are_what_the_dry_run_counts():
    """The listing reads the built-ins' counts from a table instead of running them: every
    row shown must equal the dry run, and every built-in must have its entry; a count given
    per latent variable is checked on VAEs whose latent has D variables of K categories."""
    assert set(BUILTIN_EVALUATIONS) == {n for n in estimators.available() if builtin(n)}
    for row in describe_estimators():
        if row.family == "broken":
            continue
        listed = row.evaluations_per_sample
        if listed not in PER_VARIABLE:
            assert listed == dry_run_text(row.name), row.name
            continue
        estimator, checked = estimators.get(row.name), 0
        for d, k in ((1, 2), (2, 3), (3, 4)):
            for objective in (objectives.get("categorical_vae", variables=d, categories=k,
                                             hidden=8),
                              objectives.get("gaussian_vae", latent_dim=d, hidden=8)):
                try:
                    counted = evaluations(objective, estimator, 3) / 3
                except estimators.EstimatorError:
                    continue
                checked += 1
                assert counted == PER_VARIABLE[listed](d, k), (row.name, objective.name, d, k)
        assert checked == 3, row.name


def test_suite_schema_is_the_committed_reference_page():
    result = cli("suite", "schema")
    assert result.returncode == 0, result.stderr
    page = (ROOT / "docs" / "suite-reference.md").read_text()
    assert result.stdout == page == reference_markdown(), (
        "docs/suite-reference.md is stale: estibench suite schema > docs/suite-reference.md")
    assert "`train_with`" in page and "`label`" in page and "[training.temperature]" in page
    assert '"independent" \\| "shared"' in page  # allowed values from the Literal


def test_every_suite_key_has_a_description():
    """The descriptions live in the models (`Field(description=...)`), the one place the page
    and the JSON Schema read them from."""
    missing = [f"{model.__name__}.{name}" for _, model in SECTIONS
               for name, field in model.model_fields.items()
               if not (field.description or "").strip()]
    assert not missing, f"fields without Field(description=...): {', '.join(missing)}"


def _properties(schema: dict) -> list[tuple[str, dict]]:
    """(path, schema) of every property of the schema's objects, its $defs included."""
    found = []
    for where, node in [("", schema), *((f"$defs.{k}.", v) for k, v in
                                         schema.get("$defs", {}).items())]:
        found += [(f"{where}{key}", value) for key, value in node.get("properties", {}).items()]
    return found


def test_suite_schema_json_describes_every_key_and_accepts_every_shipped_suite():
    result = cli("suite", "schema", "--json")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    properties = _properties(schema)
    assert len(properties) > len(Suite.model_fields)  # the nested tables' keys are there too
    undescribed = [path for path, value in properties if not value.get("description")]
    assert not undescribed, f"properties without a description: {', '.join(undescribed)}"
    assert schema["properties"]["name"]["description"] == Suite.model_fields["name"].description
    # A suite file may omit `name` (load_suite takes the file name): every shipped one does.
    assert "name" not in schema["required"]
    validator = Draft202012Validator(schema)
    files = sorted(SUITES_DIR.glob("*.toml"))
    assert files
    for path in files:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
                  for e in validator.iter_errors(raw)]
        assert not errors, f"{path.name}: " + "; ".join(errors)
    smoke = tomllib.loads((SUITES_DIR / "smoke.toml").read_text(encoding="utf-8-sig"))
    assert not validator.is_valid({**smoke, "unknown_key": 1})  # unknown keys are errors
    assert not validator.is_valid({k: v for k, v in smoke.items() if k != "objectives"})


def test_suite_schema_json_and_suite_show():
    schema = cli("suite", "schema", "--json")
    assert schema.returncode == 0 and '"properties"' in schema.stdout
    shown = cli("suite", "show", "smoke")
    assert shown.returncode == 0, shown.stderr
    raw = tomllib.loads(shown.stdout)
    raw.setdefault("name", "smoke")
    assert load_suite("smoke").model_dump() == load_suite("smoke").model_validate(raw
                                                                                 ).model_dump()
    missing = cli("suite", "show", "smok")
    assert missing.returncode == 2 and "did you mean 'smoke'" in missing.stderr


def test_dry_run_lists_cells_and_inapplicable_pairs_and_runs_nothing(tmp_path):
    out = tmp_path / "run"
    result = cli("run", "smoke", "--dry-run", "--out", str(out), "--seeds", "0,1")
    assert result.returncode == 0, result.stderr
    plan_cells = [line for line in result.stdout.splitlines() if " / seed " in line]
    assert len(plan_cells) == 2 * 2 * 3  # objectives x seeds x applicable estimators
    assert "not applicable" in result.stdout and "pathwise" in result.stdout
    assert "does not apply" in result.stdout and "estimated time: about" in result.stdout
    assert not out.exists()


def test_unknown_override_names_the_suite_entries(tmp_path):
    result = cli("run", "smoke", "--dry-run", "--estimator", "reinfroce")
    assert result.returncode == 2
    assert "--estimator 'reinfroce'" in result.stderr and "did you mean 'reinforce'" in (
        result.stderr)


_LOADED = """
import sys
from estibench.cli.app import app
try:
    app([{args}])
except SystemExit:
    pass
heavy = [m for m in ("torch", "pandas", "seaborn", "matplotlib", "dask") if m in sys.modules]
print("HEAVY", heavy)
"""


def test_help_and_list_suites_import_no_heavy_library():
    for args in ('"--help"', '"list", "suites"', '"run", "--help"', '"suite", "show", "smoke"'):
        result = subprocess.run([sys.executable, "-c", _LOADED.format(args=args)],
                                capture_output=True, text=True, timeout=120)
        assert "HEAVY []" in result.stdout, (args, result.stdout[-500:], result.stderr)


def test_help_texts_survive_rich_markup():
    """Typer renders help with rich markup: an unescaped `[word` is read as a style tag and
    vanishes from `--help` (it hid `[quick]` and `[default: standard]`)."""
    import re

    import typer

    from estibench.cli.app import app

    def walk(command, path: str):
        for param in command.params:
            yield f"{path} {param.name}", getattr(param, "help", None) or ""
        yield path, command.help or ""
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    texts = list(walk(typer.main.get_command(app), "estibench"))
    assert len(texts) > 20
    eaten = [(where, text) for where, text in texts if re.search(r"(?<!\\)\[[a-zA-Z]", text)]
    assert not eaten, eaten


def test_flags_show_no_type_in_help():
    """A flag takes no value: `--report/--no-report` shows no `<bool>` (an option with a value
    keeps its type)."""
    from typer.testing import CliRunner

    from estibench.cli.app import app

    for command in (["run", "--help"], ["recommend", "--help"], ["report", "--help"]):
        shown = CliRunner().invoke(app, command, env={"COLUMNS": "160"}).output
        assert "--no-report" in shown or "--help" in shown
        assert "<bool>" not in shown, command
    assert "<int>" in CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "160"}).output


def test_an_alias_lists_the_options_it_fixes_as_fixed():
    """carms-clipped is carms with ratio='clipped': its row must not show carms' default
    ratio='exact' as if it were its own, and the built estimator must have what it lists."""
    rows = {row.name: row for row in describe_estimators()}
    aliases = estimators.registry.aliases()
    assert any(fixed for _, fixed in aliases.values())  # the test checks something
    for name, (_, fixed) in aliases.items():
        listed = {o.name: o for o in rows[name].options}
        built = estimators.get(name)
        for option, value in fixed.items():
            assert listed[option].text() == f"{option}={value!r} (fixed)", name
            assert getattr(built, option) == value, (name, option)


def test_the_dry_run_lists_the_cells_whose_estimator_breaks(monkeypatch):
    """An estimator whose dry run raises is planned as failing cells (the run records them
    failed with the reason): the dry run shows them rather than leaving them out."""
    import io

    from rich.console import Console

    from estibench.benchmarks.suites.schema import parse_suite
    from estibench.cli.plan import dry_run

    class Raising(estimators.Estimator):
        name = "raising"

        def estimate(self, q, f, num_samples, noise):
            raise RuntimeError("this plugin is broken")

    monkeypatch.setattr(estimators.registry, "_factories", dict(estimators.registry._factories))
    estimators.register("raising", Raising)
    suite = parse_suite({
        "name": "broken", "seeds": [0], "num_samples": [2], "training": {"steps": 2},
        "metrics": {"checkpoints": [-1], "replicas": 4, "throughput": False},
        "objectives": [{"name": "bernoulli_toy"}],
        "estimators": [{"name": "raising"}, {"name": "reinforce", "options": {"baseline": "loo"}}]})
    out = io.StringIO()
    dry_run(suite, Console(file=out, width=200))
    text = out.getvalue()
    assert "1 cells to run" in text
    assert "1 cells that will fail" in text and "this plugin is broken" in text


def test_a_large_dry_run_lists_the_first_cells_and_counts_the_rest(tmp_path):
    from estibench.cli.plan import SHOWN_CELLS

    suite = tmp_path / "many.toml"
    seeds = ", ".join(str(s) for s in range(SHOWN_CELLS + 100))
    suite.write_text(f"seeds = [{seeds}]\nnum_samples = [2]\n[training]\nsteps = 2\n"
                     "[metrics]\ncheckpoints = [-1]\nreplicas = 4\nthroughput = false\n"
                     '[[objectives]]\nname = "bernoulli_toy"\n'
                     '[[estimators]]\nname = "reinforce"\noptions = { baseline = "loo" }\n')
    result = cli("run", str(suite), "--dry-run")
    assert result.returncode == 0, result.stderr
    listed = [line for line in result.stdout.splitlines() if " / seed " in line]
    assert len(listed) == SHOWN_CELLS
    assert "... and 100 more cells" in result.stdout
