"""reports.write_report and the figures: sections, valid images, a self-contained page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from estibench import reports
from estibench.benchmarks.results.store import Store
from estibench.reports.figures import standard as figures
from estibench.reports.figures.axes import NoData
from estibench.reports.figures.palette import estimator_palette
from estibench.reports.figures.standard import FIGURES
from tests.reports.fabricate import (
    FAILED_REASON,
    NOT_APPLICABLE_REASON,
    fabricate_problem_run,
    fabricate_run,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("overview", "summary", "figures", "problems", "environment", "suite", "notes")
# Figures the fabricated run (one S) must produce; variance_vs_samples needs several S.
DRAWN = {"mse_vs_cost", "variance_over_training", "training_curves", "bias_variance", "tightness",
         "efficiency", "throughput"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One full report of the fabricated run (drawing is the slow part: build it once)."""
    run = fabricate_run(tmp_path_factory.mktemp("report") / "run")
    return reports.write_report(run)


@pytest.fixture(scope="module")
def html(report: dict[str, Path]) -> str:
    return report["html"].read_text(encoding="utf-8")


def assert_self_contained(text: str) -> None:
    assert not re.search(r"https?://", text, flags=re.IGNORECASE)
    for src in re.findall(r'src="([^"]*)"', text):
        assert src.startswith("data:")
    assert "<link" not in text and "@import" not in text and "url(" not in text


# -- the full report -------------------------------------------------------------------------


def test_paths_and_default_location(report: dict[str, Path]) -> None:
    assert set(report) == {"html", "md", "figures", "summary"}
    run_dir = report["html"].parent.parent
    assert report["html"] == run_dir / "report" / "report.html"
    for key in ("html", "md", "summary"):
        assert report[key].is_file()
    assert report["figures"].is_dir()


def test_every_drawn_figure_is_a_valid_png(report: dict[str, Path]) -> None:
    files = {p.stem: p for p in report["figures"].iterdir()}
    assert set(files) == DRAWN
    for path in files.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert 10_000 < len(data) < 2_000_000


def test_html_has_every_section_and_is_self_contained(html: str) -> None:
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert_self_contained(html)
    # the suite's data URL is still shown, only not as a live URL
    assert "https&#58;//example.invalid/digits.npz" in html


def test_html_embeds_every_figure(html: str) -> None:
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == len(DRAWN)
    for uri in uris:
        assert base64.b64decode(uri).startswith(PNG_MAGIC)
    for name in DRAWN:
        assert f'id="figure-{name}"' in html


def test_html_content(html: str) -> None:
    assert "Bounds on held-out data" in html and "Gradient quality" in html
    assert "± " in html  # mean ± SE
    assert FAILED_REASON in html and NOT_APPLICABLE_REASON in html
    assert "abc1234" in html and "testhost" in html  # environment
    assert "seeds = [0, 1, 2]" in html and "[[estimators]]" in html  # the suite, as TOML
    assert "biased by design" in html
    assert "reference" in html and "never the truth" in html
    # the one figure the run cannot give is named with the reason
    assert "Variance and SNR against the number of samples" in html
    assert "several num_samples" in html


def test_markdown_tables_and_relative_links(report: dict[str, Path]) -> None:
    text = report["md"].read_text(encoding="utf-8")
    assert "| objective | estimator | seeds | test ELBO (nats)" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(DRAWN)
    for link in links:
        assert not Path(link).is_absolute()
        assert (report["md"].parent / link).is_file()
    assert FAILED_REASON in text


def test_summary_csv_round_trips(report: dict[str, Path]) -> None:
    table = pd.read_csv(report["summary"])
    assert {"objective", "estimator", "seeds", "elbo_mean", "elbo_se"} <= set(table.columns)
    assert len(table) == 5  # 2 objectives x 3 estimators, minus the inapplicable pair


# -- runs with nothing to show ----------------------------------------------------------------


def test_run_with_only_failed_and_not_applicable_cells(tmp_path: Path) -> None:
    run = fabricate_problem_run(tmp_path / "run")
    paths = reports.write_report(run, out=tmp_path / "out")
    assert paths["html"] == tmp_path / "out" / "report.html"
    html = paths["html"].read_text(encoding="utf-8")
    assert "no completed cells" in html.lower()
    assert FAILED_REASON in html and NOT_APPLICABLE_REASON in html
    assert list(paths["figures"].iterdir()) == []
    for spec in FIGURES:
        assert spec.title in html  # each skipped figure is named
    assert_self_contained(html)
    assert "No completed cells" in paths["md"].read_text(encoding="utf-8")


def test_empty_store_reports_no_completed_cells(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    paths = reports.write_report(tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert "no completed cells" in html.lower()
    assert "no readable suite.json" in html
    assert "no completed cells" in paths["md"].read_text(encoding="utf-8").lower()
    assert paths["summary"].is_file()


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(reports.ReportError, match="not a run directory"):
        reports.write_report(tmp_path / "nowhere")
    Store.open(tmp_path).close()
    with pytest.raises(reports.ReportError, match="png, svg, pdf"):
        reports.write_report(tmp_path, image_format="gif")


# -- single figures (fast: a reduced frame draws only what it holds) -------------------------


@pytest.fixture(scope="module")
def several_sizes(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    run = fabricate_run(tmp_path_factory.mktemp("sizes") / "run", sample_sizes=(1, 4, 16))
    return reports.load(run)


def test_variance_vs_samples_needs_several_sizes(several_sizes: pd.DataFrame,
                                                 tmp_path: Path) -> None:
    palette = estimator_palette(several_sizes["estimator"])
    rows = several_sizes[several_sizes["metric"].str.startswith("grad/distribution/")]
    fig = figures.variance_vs_samples(rows, palette)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # 2 objectives x (variance, SNR)
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    assert any("1/S" in t.get_text() for ax in axes if ax.get_legend() for t in
               ax.get_legend().get_texts())
    one_size = rows[rows["num_samples"] == 4]
    with pytest.raises(NoData, match="one number of samples"):
        figures.variance_vs_samples(one_size, palette)


def test_encoder_snr_vs_samples_needs_several_sizes(several_sizes: pd.DataFrame) -> None:
    palette = estimator_palette(several_sizes["estimator"])
    rows = several_sizes[several_sizes["metric"] == "grad/encoder/snr_norm"]
    fig = figures.encoder_snr_vs_samples(rows, palette)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes and all(ax.get_xscale() == "log" == ax.get_yscale() for ax in axes)
    texts = {t.get_text() for ax in axes for t in ax.get_legend().get_texts()}
    assert {"∝ √K", "∝ 1/√K"} <= texts
    with pytest.raises(NoData, match="several numbers of samples"):
        figures.encoder_snr_vs_samples(rows[rows["num_samples"] == 4], palette)


@pytest.mark.parametrize("image_format", ["svg", "pdf"])
def test_other_formats(several_sizes: pd.DataFrame, tmp_path: Path, image_format: str) -> None:
    rows = several_sizes[several_sizes["metric"].str.startswith("time/")]  # throughput only
    drawn, skipped = figures.draw_all(rows, tmp_path, image_format)
    # one throughput figure per S: every S measured is shown
    assert [f.name for f in drawn] == ["throughput_S1", "throughput_S4", "throughput_S16"]
    assert [f.title for f in drawn] == [f"Throughput (S = {s})" for s in (1, 4, 16)]
    assert {s.name.split("_S")[0] for s in skipped} == {s.name for s in FIGURES} - {
        "throughput"}
    data = drawn[0].path.read_bytes()
    assert drawn[0].path.suffix == f".{image_format}"
    if image_format == "svg":
        assert b"<svg" in data[:2000]
    else:
        assert data.startswith(b"%PDF")
    # the page shows a PNG twin, whatever the files' format
    assert drawn[0].embed.startswith(PNG_MAGIC) and drawn[0].embed_mime == "image/png"


def test_palette_colours_are_the_same_in_every_figure(several_sizes: pd.DataFrame) -> None:
    palette = estimator_palette(several_sizes["estimator"])
    with figures.style():
        fig = figures.throughput(several_sizes[several_sizes["num_samples"] == 4], palette)
        with pytest.raises(ValueError, match="draw one figure per S"):
            figures.throughput(several_sizes, palette)  # never silently cut to one S
    legend = fig.legends[0]
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=False):
        if text.get_text() in palette:
            assert tuple(handle.get_color()[:3]) == pytest.approx(palette[text.get_text()])
    assert "Throughput on cpu" in fig._suptitle.get_text()


def test_a_stale_figure_is_removed(tmp_path: Path) -> None:
    run = fabricate_problem_run(tmp_path / "run")
    stale = run / "report" / "figures" / "tightness.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    reports.write_report(run)
    assert not stale.exists()


def test_log_axes_are_labelled_in_plain_text() -> None:
    """Figures parse no mathtext (a `$` in a label is the user's text), so log ticks cannot be
    matplotlib's mathtext labels: they would print as `$\\mathdefault{10^{-3}}$`."""
    from matplotlib.figure import Figure

    from estibench.reports.figures.axes import _log_axes, decade

    ax = Figure().subplots()
    _log_axes(ax)
    ax.plot([1e-4, 1e2], [1.0, 1e3])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "10⁻²" in labels and "10²" in labels and not any("$" in t for t in labels)
    assert decade(1e-3) == "10⁻³" and decade(1.0) == "10⁰" and decade(3e-3) == ""


def test_every_estimator_and_every_s_is_in_some_figure(tmp_path: Path) -> None:
    """An estimator measured only at a larger S (RLOO needs S >= 2) appears in the figures of
    that S: the per-S figures leave no estimator and no S out."""
    frame = reports.load(fabricate_run(tmp_path / "run", sample_sizes=(1, 4)))
    only_at_4 = sorted(frame["estimator"].dropna().unique())[0]
    frame = frame[~((frame["estimator"] == only_at_4) & (frame["num_samples"] == 1))]
    palette = estimator_palette(frame["estimator"].dropna())
    for spec in FIGURES:
        if not spec.per_sample_size:
            continue
        shown: dict[int, set[str]] = {}
        with figures.style():
            for name, _, rows in figures.variants(spec, frame):
                try:
                    fig = spec.draw(rows, palette)
                except figures.NoData:
                    continue
                size = int(name.rsplit("_S", 1)[1])
                shown[size] = {t.get_text() for t in fig.legends[0].get_texts()}
        assert set(shown) == {1, 4}, spec.name
        assert only_at_4 in shown[4] and only_at_4 not in shown[1], spec.name
        assert shown[1] | shown[4] >= set(frame["estimator"].dropna()) - {"exact"}, spec.name
