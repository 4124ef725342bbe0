"""The one place the harness reaches for `reports` (imported when a report is wanted)."""

from __future__ import annotations

from pathlib import Path


def write_report(run_dir: Path, image_format: str = "png", dpi: int | None = None
                 ) -> Path | None:
    """Write RUN_DIR/report/ and return the HTML page; None without the reports package."""
    try:
        from reports import write_report as write
    except ImportError:  # the reports package is optional for the harness
        return None
    options = {} if dpi is None else {"dpi": dpi}
    return write(run_dir, image_format=image_format, **options)["html"]
