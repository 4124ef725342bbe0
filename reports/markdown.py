"""The Markdown summary: tables as Markdown, figures as links relative to report.md."""

from __future__ import annotations

import html
import os
from pathlib import Path

import jinja2

from estibench.benchmarks.results.labels import printable
from estibench.reports.context import ReportData
from estibench.reports.figures.axes import RenderedFigure

TEMPLATE = "report.md.j2"


def md_text(value: object) -> str:
    """Free text: HTML escaped, since Markdown renders inline HTML (a label `<img ...>`), and
    without control characters (`cat report.md` must not run a label's escape sequences)."""
    return html.escape(printable(value), quote=False)


def md_cell(value: object) -> str:
    """A table cell: HTML escaped, pipes escaped, no line breaks (they would break the row)."""
    return md_text(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ReportData, target: Path) -> str:
    """The Markdown text for a file written at ``target`` (links are relative to it)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("estibench.reports", "templates"),
        autoescape=False,  # Markdown, not HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["md_cell"] = md_cell
    env.filters["md_text"] = md_text

    def figure_link(figure: RenderedFigure) -> str:
        return Path(os.path.relpath(figure.path, target.parent)).as_posix()

    env.filters["figure_link"] = figure_link
    return env.get_template(TEMPLATE).render(r=report)
