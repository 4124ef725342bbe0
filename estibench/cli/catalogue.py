"""`estibench list ...` and `estibench suite schema | show`: what exists and how to say it.

Imports are deferred to the command that needs them: listing or showing the shipped suites
never loads torch (the tables and the reference need the registries and models, which do).
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

import typer
from rich.table import Table

from estibench.cli.common import console, did_you_mean, fail, safe

LISTABLE = ("estimators", "objectives", "datasets", "suites")
suite_app = typer.Typer(no_args_is_help=True, help="The suite format: reference and templates.")


def shipped_suites() -> list[str]:
    """Names of the shipped suites, found without importing the suite models."""
    folder = resources.files("estibench.benchmarks.suites")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def _estimator_table() -> Table:
    from estibench.benchmarks.harness.catalogue import describe_estimators

    table = Table(title="estimators", show_lines=True,
                  caption="f evals / sample: evaluations of f per requested sample; D: the "
                          "latent's variables, K: their categories (2 for a Bernoulli)")
    for column in ("name", "family", "applies to", "unbiased", "f evals / sample", "options"):
        table.add_column(column, overflow="fold")
    for r in describe_estimators():
        table.add_row(*map(safe, (r.name, r.family, r.applies_to, r.unbiased,
                                    r.evaluations_per_sample)),
                      safe("\n".join(o.text() for o in r.options)) or "-")
    return table


def _objective_table() -> Table:
    from estibench.benchmarks.harness.catalogue import describe_objectives

    table = Table(title="objectives", show_lines=True)
    for column in ("name", "latent q(z|x)", "exact (default options)", "options"):
        table.add_column(column, overflow="fold")
    for r in describe_objectives():
        table.add_row(*map(safe, (r.name, r.latent, r.exact)),
                      safe("\n".join(o.text() for o in r.options)) or "-")
    return table


def list_(
    what: Annotated[str, typer.Argument(help="estimators | objectives | datasets | suites")],
) -> None:
    """List what is available (estimators and objectives with their options)."""
    if what == "estimators":
        console.print(_estimator_table())
    elif what == "objectives":
        console.print(_objective_table())
    elif what == "datasets":
        from estibench.benchmarks import data

        for name in data.available():
            console.print(name, highlight=False)
    elif what == "suites":
        for name in shipped_suites():
            console.print(name, highlight=False)
    else:
        raise fail(f"cannot list {what!r}{did_you_mean(what, list(LISTABLE))}; "
                    f"choose one of {', '.join(LISTABLE)}")


@suite_app.command()
def schema(
    json_schema: Annotated[bool, typer.Option(
        "--json", help="The JSON Schema of a suite file instead of the Markdown reference")]
    = False,
) -> None:
    """Print the reference of every suite key (generated from the suite models)."""
    if json_schema:
        import json

        from estibench.benchmarks.suites.reference import suite_json_schema

        typer.echo(json.dumps(suite_json_schema(), indent=2))
        return
    from estibench.benchmarks.suites.reference import reference_markdown

    typer.echo(reference_markdown(), nl=False)


@suite_app.command()
def show(name: Annotated[str, typer.Argument(help="A shipped suite (estibench list suites)")]
         ) -> None:
    """Print a shipped suite's TOML, a template to copy: `estibench suite show smoke > my.toml`."""
    names = shipped_suites()
    if name not in names:
        raise fail(f"unknown suite {name!r}{did_you_mean(name, names)}; shipped suites: "
                    f"{', '.join(names)}")
    typer.echo((resources.files("estibench.benchmarks.suites") / f"{name}.toml").read_text(),
    nl=False)
