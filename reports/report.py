"""``write_report``: a run directory -> HTML, Markdown, figures and summary.csv."""

from __future__ import annotations

import os
from pathlib import Path

from estibench.reports.aggregate import (
    load,
    load_cells,
    load_runs,
    load_suite_config,
    run_dirs,
    summary_table,
)
from estibench.reports.conventions import biased_estimators
from estibench.reports.errors import ReportError

REPORT_DIRNAME = "report"


def write_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    image_format: str = "png",
    dpi: int | None = None,
) -> dict[str, Path]:
    """Write the report of ``run_dir`` into ``out`` (default ``RUN_DIR/report/``).

    Files: ``report.html`` (self-contained), ``report.md``, ``figures/*.{image_format}`` and
    ``summary.csv`` (the summary table with full precision). ``dpi``: resolution of the saved
    figures (default ``figures.DPI``; the HTML embeds PNGs at the default). A run without
    completed cells still gets a report that says so. Returns the paths under the keys html,
    md, figures, summary.
    """
    # Imported here: matplotlib and seaborn are slow to import and `estibench.cli.report` is
    # imported by the CLI at start-up.
    from estibench.reports.context import collect
    from estibench.reports.figures.axes import DPI, IMAGE_FORMATS
    from estibench.reports.figures.palette import estimator_palette
    from estibench.reports.figures.paper import draw_paper_figures
    from estibench.reports.figures.standard import FIGURES, draw_all
    from estibench.reports.html import render_html
    from estibench.reports.markdown import render_markdown

    if image_format not in IMAGE_FORMATS:
        raise ReportError(f"image format {image_format!r} is not supported; "
                          f"choose one of {', '.join(IMAGE_FORMATS)}")
    run_dir = run_dirs(run_dir)[0]
    target = Path(out) if out is not None else run_dir / REPORT_DIRNAME
    figures_dir = target / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    # A figure skipped now must not leave last time's image behind (only our own files go).
    for spec in FIGURES:
        for extension in IMAGE_FORMATS:
            (figures_dir / f"{spec.name}.{extension}").unlink(missing_ok=True)

    cells = load_cells(run_dir)
    frame = load(run_dir)
    # Built from every cell's label (failed ones too), so colours do not depend on outcomes.
    palette = estimator_palette(cells["estimator"].dropna(), biased_estimators(cells))
    try:
        figures, skipped = draw_all(frame, figures_dir, image_format, palette,
                                    DPI if dpi is None else dpi)
    except ValueError as err:  # a bad dpi
        raise ReportError(str(err)) from None
    if not frame.empty:  # the paper suites' own figures come first
        paper, not_drawn = draw_paper_figures(frame, load_suite_config(run_dir), figures_dir,
                                              image_format, palette)
        figures, skipped = paper + figures, not_drawn + skipped
    summary = summary_table(frame)
    data = collect(run_dir, cells, frame, summary, load_runs(run_dir), figures, skipped)

    paths = {
        "html": target / "report.html",
        "md": target / "report.md",
        "figures": figures_dir,
        "summary": target / "summary.csv",
    }
    summary.to_csv(paths["summary"], index=False)
    paths["html"].write_text(render_html(data), encoding="utf-8")
    paths["md"].write_text(render_markdown(data, paths["md"]), encoding="utf-8")
    return paths
