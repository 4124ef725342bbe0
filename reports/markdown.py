"""The Markdown summary: tables as Markdown, figures as links relative to report.md."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2

from reports.context import ReportData
from reports.figures import RenderedFigure

TEMPLATE = "report.md.j2"


def md_cell(value: object) -> str:
    """A table cell: pipes escaped, no line breaks (either would break the row)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ReportData, target: Path) -> str:
    """The Markdown text for a file written at ``target`` (links are relative to it)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["md_cell"] = md_cell

    def figure_link(figure: RenderedFigure) -> str:
        return Path(os.path.relpath(figure.path, target.parent)).as_posix()

    env.filters["figure_link"] = figure_link
    return env.get_template(TEMPLATE).render(r=report)
