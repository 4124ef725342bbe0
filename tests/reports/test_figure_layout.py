"""Every figure of small fabricated runs, rendered: no text box overlaps another (titles,
legends, labels, ticks; measured with matplotlib's own extents), everything inside the canvas,
panels only for what was measured, and one fixed look per estimator."""

from __future__ import annotations

import subprocess
import sys
from itertools import combinations
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from estibench import estimators, reports
from estibench.reports.figures import standard as figures
from estibench.reports.figures.palette import estimator_palette
from estibench.reports.figures.style import BUILT_IN, look
from tests.reports.fabricate import fabricate_run

TOLERANCE = 1.0  # pixels


def _vae_run(tmp_path: Path) -> pd.DataFrame:
    return reports.load(fabricate_run(tmp_path / "vae"))


def _with_toy(frame: pd.DataFrame) -> pd.DataFrame:
    """One objective becomes a toy: no encoder, no held-out bounds (as in the smoke suite)."""
    toy = frame["objective"] == "gaussian_vae"
    dropped = toy & (frame["metric"].str.startswith("grad/encoder/")
                     | (frame["metric"].str.startswith("test/")))
    out = frame[~dropped].copy()
    out.loc[out["objective"] == "gaussian_vae", "objective"] = "bernoulli_toy"
    return out


def _many_estimators(frame: pd.DataFrame) -> pd.DataFrame:
    """Eight estimators with long labels, as in the standard suite."""
    copies = [frame]
    for suffix in ("ema-0.95", "loo-True", "0.5-False", "temperature-annealed", "x"):
        extra = frame[frame["estimator"] == "reinforce-loo"].copy()
        extra["estimator"] = f"reinforce-{suffix}"
        extra["cell_id"] += 10_000 * (len(copies))
        copies.append(extra)
    return pd.concat(copies, ignore_index=True)


def _drawn_ticks(axis) -> list:
    """Major tick labels inside the view (matplotlib also keeps ticks it does not draw)."""
    lo, hi = sorted(axis.get_view_interval())
    span = (hi - lo) * 1e-9
    return [tick.label1 for tick in axis.get_major_ticks()
            if lo - span <= tick.get_loc() <= hi + span and tick.label1.get_text()]


def _boxes(fig) -> tuple[list[tuple[str, Bbox]], list[list[tuple[str, Bbox]]]]:
    """(figure-level boxes: suptitle, legends, each panel's tight box; per panel its texts)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    top: list[tuple[str, Bbox]] = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        top.append(("suptitle", fig._suptitle.get_window_extent(renderer)))
    for i, legend in enumerate(fig.legends):
        top.append((f"legend {i}", legend.get_window_extent(renderer)))
    panels = []
    for j, ax in enumerate(a for a in fig.axes if a.get_visible()):
        top.append((f"panel {j}", ax.get_tightbbox(renderer)))
        texts = [("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)]
        for name, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):
            texts += [(f"{name} {label.get_text()}", label) for label in _drawn_ticks(axis)]
        panels.append([(f"panel {j} {name}", t.get_window_extent(renderer))
                       for name, t in texts if t.get_visible() and t.get_text()])
    return top, panels


def _overlap(a: Bbox, b: Bbox) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > TOLERANCE
            and min(a.y1, b.y1) - max(a.y0, b.y0) > TOLERANCE)


def assert_no_overlap(fig, name: str) -> None:
    top, panels = _boxes(fig)
    canvas = fig.bbox
    for label, box in top:
        assert (box.x0 >= -TOLERANCE and box.y0 >= -TOLERANCE
                and box.x1 <= canvas.x1 + TOLERANCE and box.y1 <= canvas.y1 + TOLERANCE), (
            f"{name}: {label} leaves the canvas: {box} not in {canvas}")
    for (a, box_a), (b, box_b) in combinations(top, 2):
        assert not _overlap(box_a, box_b), f"{name}: {a} overlaps {b}"
    for texts in panels:
        for (a, box_a), (b, box_b) in combinations(texts, 2):
            assert not _overlap(box_a, box_b), f"{name}: {a} overlaps {b}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, pd.DataFrame]:
    vae = _vae_run(tmp_path_factory.mktemp("runs"))
    sizes = reports.load(fabricate_run(tmp_path_factory.mktemp("sizes") / "run",
                                       sample_sizes=(1, 4, 16)))
    return {"toy and vae": _with_toy(vae), "many estimators": _many_estimators(vae),
            "several S": _with_toy(sizes)}


@pytest.fixture(scope="module")
def drawn(runs) -> dict[tuple[str, str], object]:
    """Every figure of every fabricated run, drawn once."""
    figs = {}
    for run, frame in runs.items():
        palette = estimator_palette(frame["estimator"])
        with figures.style():
            for spec in figures.FIGURES:
                for name, _, rows in figures.variants(spec, frame):
                    try:
                        figs[run, name] = spec.draw(rows, palette)
                    except figures.NoData:
                        continue
    return figs


@pytest.mark.parametrize("spec", figures.FIGURES, ids=lambda s: s.name)
def test_figures_have_no_overlapping_text(drawn, spec):
    mine = {(run, name): fig for (run, name), fig in drawn.items()
            if name == spec.name or name.startswith(f"{spec.name}_S")}
    assert mine, f"{spec.name} was drawn for none of the fabricated runs"
    for (run, name), fig in mine.items():
        assert_no_overlap(fig, f"{name} ({run})")


def test_panels_only_for_what_was_measured(drawn):
    fig = drawn["toy and vae", "variance_over_training"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "bernoulli_toy: encoder" not in titles and "bernoulli_toy: distribution" in titles
    assert all(ax.has_data() for ax in fig.axes if ax.get_visible())
    assert any("bernoulli_toy: no encoder" in n for n in fig.estibench_left_out)
    curves = drawn["toy and vae", "training_curves"]
    assert len([a for a in curves.axes if a.get_visible()]) == 3  # the toy has no IWAE
    assert any("bernoulli_toy" in n and "IWAE" in n for n in curves.estibench_left_out)
    tight = drawn["toy and vae", "tightness"]
    assert not any("bernoulli_toy" in a.get_title() for a in tight.axes if a.get_visible())


def test_each_estimator_has_one_look_in_every_run_and_every_figure(runs, drawn):
    small = estimator_palette(["pathwise", "reinforce-loo"])
    large = estimator_palette(runs["many estimators"]["estimator"])
    assert small["reinforce-loo"] == large["reinforce-loo"]
    # every registered estimator has a (colour, marker) pair of its own; two that share a
    # colour differ in marker and line style (greyscale print)
    registered = set(estimators.available()) - set(estimators.registry.aliases())
    assert set(BUILT_IN) == registered
    looks = {name: look(name) for name in BUILT_IN}
    assert len({(lk.colour, lk.marker) for lk in looks.values()}) == len(BUILT_IN)
    for (a, la), (b, lb) in combinations(looks.items(), 2):
        if la.colour == lb.colour:
            assert la.marker != lb.marker and la.linestyle != lb.linestyle, (a, b)
    # a plugin, and a variant of a built-in, take a pair no built-in has
    for label in ("my_plugin", "another-plugin", "reinforce-loo", "gumbel_rao-0.5"):
        assert (look(label).colour, look(label).marker) not in {
            (lk.colour, lk.marker) for lk in looks.values()}, label
    for (run, name), fig in drawn.items():
        palette = estimator_palette(runs[run]["estimator"])
        legend = fig.legends[0]
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            label = text.get_text()
            if label in palette:
                assert tuple(handle.get_color()[:3]) == pytest.approx(palette[label])
                assert handle.get_marker() == look(label).marker, (name, label)


def test_image_format_and_dpi_through_the_cli(tmp_path):
    run = fabricate_run(tmp_path / "run")
    out = tmp_path / "svg"
    done = subprocess.run([sys.executable, "-m", "estibench.cli.app", "report", str(run), "--out",
                           str(out), "--image-format", "svg", "--dpi", "300"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    svgs = sorted(p.name for p in (out / "figures").iterdir())
    assert svgs and all(name.endswith(".svg") for name in svgs)
    assert "data:image/png;base64," in (out / "report.html").read_text()  # PNGs in the page
    bad = subprocess.run([sys.executable, "-m", "estibench.cli.app", "report", str(run), "--out",
                          str(tmp_path / "bad"), "--dpi", "5"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "dpi must be an integer from 20 to 1200, got 5" in bad.stderr


def test_dpi_sets_the_resolution_of_saved_pngs(runs, tmp_path):
    frame = runs["toy and vae"]
    frame = frame[frame["metric"].str.startswith("time/")]  # the throughput figure only
    sizes = {}
    for dpi in (50, 100):
        [figure], _ = figures.draw_all(frame, tmp_path / str(dpi), "png", dpi=dpi)
        sizes[dpi] = matplotlib.image.imread(figure.path).shape[:2]
    assert sizes[100][0] == pytest.approx(2 * sizes[50][0], abs=2)
    assert sizes[100][1] == pytest.approx(2 * sizes[50][1], abs=2)
