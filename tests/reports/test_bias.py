"""Bias told from noise in the reports, and the conventions table: on the fabricated run of
`tests/reports/fabricate.py`, whose values are known formulas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from estibench import reports
from estibench.reports.bias import bias_summary, verdict
from estibench.reports.conventions import (
    bound_text,
    conventions,
    direct_term_text,
    kl_text,
    samples_text,
    temperature_text,
)
from estibench.reports.figures.palette import estimator_palette
from estibench.reports.figures.variance import bias_variance
from tests.reports.fabricate import (
    ESTIMATORS,
    SEEDS,
    STEPS,
    fabricate_run,
    p_value,
    replicas,
    squared_bias,
    total_variance,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fabricate_run(tmp_path_factory.mktemp("bias") / "run")


@pytest.fixture(scope="module")
def frame(run: Path) -> pd.DataFrame:
    return reports.load(run)


def estimator(label: str):
    return next(e for e in ESTIMATORS if e.label == label)


def test_bias_summary_combines_seeds_by_hand(frame: pd.DataFrame) -> None:
    table = bias_summary(frame).set_index(["objective", "estimator", "wrt"])
    assert set(table.index.get_level_values("objective")) == {"bernoulli_vae"}  # exact only
    for label in ("gumbel_softmax", "reinforce-loo"):
        e = estimator(label)
        row = table.loc[("bernoulli_vae", label, "distribution")]
        assert row["seeds"] == 3
        assert row["squared_bias"] == pytest.approx(squared_bias(e))
        se = [0.1 * squared_bias(e) + 1e-6] * 3
        assert row["squared_bias_se"] == pytest.approx(math.sqrt(sum(v**2 for v in se)) / 3)
        floors = [total_variance(e, s, STEPS, "distribution") / replicas(e, s, STEPS)
                  for s in SEEDS]
        assert row["noise_floor"] == pytest.approx(float(np.mean(floors)))
        assert row["p_value"] == pytest.approx(min(1.0, 3 * min(p_value(e, s) for s in SEEDS)))
    assert table.loc[("bernoulli_vae", "gumbel_softmax", "distribution"), "verdict"] == \
        "biased, p = 3e-06"
    loo = table.loc[("bernoulli_vae", "reinforce-loo", "distribution")]
    assert (loo["replicas_min"], loo["replicas_max"]) == (128, 4096)
    assert loo["verdict"] == "no bias detected at M = 128–4096 (p = 0.9)"


def test_verdict_texts() -> None:
    assert verdict(0.004, "128") == "biased, p = 0.004"
    assert verdict(0.01, "128") == "no bias detected at M = 128 (p = 0.01)"
    assert verdict(math.nan, "128").startswith("not tested")


def test_the_report_shows_bias_against_the_floor_and_no_raw_bias_columns(run: Path,
                                                                         tmp_path: Path) -> None:
    md = Path(reports.write_report(run, tmp_path / "out")["md"]).read_text()
    assert "Bias told from noise" in md and "noise floor (tr(Var)/M" in md
    assert "| bernoulli_vae | gumbel_softmax | distribution | 3 | 128 | 0.0900 ± 0.0052 |" in md
    assert "no bias detected at M = 128–4096" in md
    assert "relative bias (distribution)" not in md and "bias norm (distribution)" not in md
    assert "| M (distribution) |" in md and "128–4096" in md
    assert "2.000 ± 0.023 †" in md  # reinforce-loo seed 0 ran to the cap: precision not met
    assert "Conventions that ran" in md and "analytic (closed form)" in md


def test_the_bias_variance_figure_draws_every_cell_with_a_variance(frame: pd.DataFrame) -> None:
    fig = bias_variance(frame, estimator_palette(frame["estimator"]))
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(axes) == 2  # bernoulli_vae: distribution and encoder
    for ax in axes:
        hollow = filled = 0
        for collection in ax.collections:
            if isinstance(collection, PathCollection):
                n = len(collection.get_offsets())
                if len(collection.get_facecolors()) == 0:
                    hollow += n
        for container in ax.containers:
            filled += len(container.lines[0].get_xdata())
        # 3 seeds each: gumbel_softmax biased (filled), reinforce-loo not (hollow at the floor)
        assert (filled, hollow) == (3, 3)
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any("noise floor" in label for label in labels)
    assert any("bias detected" in label for label in labels)


def test_conventions_read_from_the_configs() -> None:
    analytic = {"objective_name": "categorical_vae", "objective_options": {"variables": 2,
                "categories": 2, "hidden": 4, "input_dim": 4}, "kl": "analytic",
                "estimator_name": "reinforce", "estimator_options": {}}
    assert kl_text(analytic) == "analytic (closed form)"
    assert direct_term_text(analytic) == "dropped (no effect: no sampled KL)"  # its default
    sampled = dict(analytic, kl="sampled", estimator_name="gumbel_softmax",
                   estimator_options={"temperature": 0.5})
    assert kl_text(sampled) == "sampled: Concrete densities at the relaxed sample"
    assert direct_term_text(sampled) == "kept"
    assert kl_text(dict(sampled, estimator_name="reinforce", estimator_options={
        "direct_term": True})) == "sampled: densities at the sample"
    k3 = dict(analytic, kl="k3")  # the Monte Carlo KL estimators are named, with their form
    assert kl_text(k3) == "k3 = r - 1 - log r: densities at the sample"
    assert direct_term_text(k3) == "dropped"  # it applies: log q(z) inside k3
    assert direct_term_text(dict(k3, kl="k3_unbiased")) == "kept (k3_unbiased)"
    toy = {"objective_name": "bernoulli_toy", "objective_options": {}, "kl": "analytic",
           "estimator_name": "reinforce", "estimator_options": {}}
    assert kl_text(toy) == "– (toy, no KL)"
    assert temperature_text(dict(sampled, temperature=0.5)) == "0.5"
    assert temperature_text(dict(analytic, temperature=None)) == "–"
    schedule = {"initial": 1.0, "minimum": 0.5, "rate": 0.001}
    assert temperature_text(dict(sampled, temperature=schedule)) == \
        "schedule max(0.5, 1 exp(-0.001 step))"
    assert temperature_text(sampled) == "not recorded"  # a run from before it was recorded
    assert temperature_text(analytic) == "–"
    assert bound_text(analytic) == "ELBO" and bound_text(toy) == "– (toy)"
    assert bound_text(dict(analytic, bound="iwae")) == "IWAE-S"
    assert samples_text(sampled) == "q"
    tempered = dict(sampled, estimator_name="st_gumbel",
                    estimator_options={"forward_temperature": 0.5})
    assert samples_text(tempered) == "not q: softmax(logits / 0.5) (forward temperature)"


def test_conventions_table_of_a_run(run: Path, frame: pd.DataFrame) -> None:
    table = conventions(reports.load_cells(run), frame).set_index(["objective", "estimator"])
    row = table.loc[("bernoulli_vae", "reinforce-loo")]
    assert row["S"] == 4 and row["M"] == "128–4096"
    assert row["KL"] == "analytic (closed form)"
    assert ("bernoulli_vae", "pathwise") not in table.index  # not applicable: nothing ran


def _three_seed_groups(estimator: tuple[str, dict], repetitions: int) -> list[pd.DataFrame]:
    """`repetitions` groups of three cells, each the real `gradient_stats` of `estimator` on a
    small categorical VAE (whose encoder gradient's coordinates are strongly correlated, as
    every VAE's are) with the exact gradient, at independent seeds."""
    import torch

    from estibench import estimators
    from estibench.benchmarks import metrics, objectives

    torch.manual_seed(0)
    vae = objectives.get("categorical_vae", variables=2, categories=3, hidden=16)
    x = torch.bernoulli(torch.full((4, 64), 0.3))
    name, options = estimator
    groups = []
    for repetition in range(repetitions):
        rows = []
        for seed in range(3):
            stats = metrics.gradient_stats(vae, estimators.get(name, **options),
                                           x, replicas=64, num_samples=2, wrt="encoder",
                                           seed=1000 * repetition + seed).as_dict()
            rows.append({f"grad/encoder/{k}": stats[k] for k in (
                "bias_norm", "noise_floor", "squared_bias", "squared_bias_se")})
        groups.append(pd.DataFrame(rows))
    return groups


def test_the_squared_bias_interval_over_seeds_covers_zero_for_an_unbiased_estimator() -> None:
    """Each cell's own SE of the squared bias sees only the per-coordinate variances, several
    times too small on a VAE: an interval from it excluded zero for RLOO in about 40% of
    three-seed groups. The interval over seeds (unclipped estimates, the spread between seeds
    counted) covers zero in at least 90% of them, and still excludes it for the biased
    Gumbel-Softmax in most."""
    from estibench.reports.bias import squared_bias_over_seeds

    unbiased = _three_seed_groups(("reinforce", {"baseline": "loo"}), 100)
    covered = [squared_bias_over_seeds(g, "encoder").low == 0 for g in unbiased]
    own_se = [max(0.0, g["grad/encoder/squared_bias"].mean() - 1.96 * math.sqrt(
        float((g["grad/encoder/squared_bias_se"] ** 2).sum())) / 3) == 0 for g in unbiased]
    assert np.mean(covered) >= 0.9, np.mean(covered)
    assert np.mean(own_se) <= 0.8, np.mean(own_se)  # the case is one the old SE fails
    biased = _three_seed_groups(("gumbel_softmax", {"temperature": 0.5}), 40)
    detected = [squared_bias_over_seeds(g, "encoder").low > 0 for g in biased]
    assert np.mean(detected) >= 0.55, np.mean(detected)


def test_the_squared_bias_over_seeds_averages_before_clipping() -> None:
    """Three unbiased seeds at -4, +1, +3 above the floor: the estimate is max(0, mean) = 0,
    where the mean of the clipped values, 4/3, would report a bias; one seed: its own SE."""
    from scipy import stats

    from estibench.reports.bias import squared_bias_over_seeds

    floor = 10.0
    cells = pd.DataFrame({
        "grad/encoder/bias_norm": [math.sqrt(floor + d) for d in (-4.0, 1.0, 3.0)],
        "grad/encoder/noise_floor": [floor] * 3,
        "grad/encoder/squared_bias_se": [0.1] * 3})
    bias = squared_bias_over_seeds(cells, "encoder")
    spread = float(np.std([-4.0, 1.0, 3.0], ddof=1)) / math.sqrt(3)
    assert bias.estimate == 0.0 and bias.se == pytest.approx(spread)
    assert bias.low == 0.0 and bias.high == pytest.approx(stats.t.ppf(0.975, 2) * spread)
    one = squared_bias_over_seeds(cells.iloc[2:], "encoder")
    assert (one.estimate, one.se) == (pytest.approx(3.0), pytest.approx(0.1))
    assert one.low == pytest.approx(3.0 - 1.96 * 0.1)


def test_figure_legends_mark_the_estimators_biased_by_design(run: Path,
                                                             frame: pd.DataFrame) -> None:
    """The tables mark them ‡; so does every figure's legend, from the same set."""
    from estibench.reports.conventions import biased_estimators

    biased = biased_estimators(reports.load_cells(run))
    assert biased == {"gumbel_softmax"}
    fig = bias_variance(frame, estimator_palette(frame["estimator"], biased))
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "gumbel_softmax ‡" in texts and "reinforce-loo" in texts
    assert not any(t.endswith("‡") and not t.startswith("gumbel_softmax") for t in texts)


def test_a_panel_with_points_names_what_it_leaves_out_under_the_figure_not_over_the_data(
        frame: pd.DataFrame) -> None:
    zero = frame.copy()
    exact_like = (zero["estimator"] == "reinforce-loo") & zero["metric"].isin(
        ["grad/distribution/total_variance", "grad/distribution/noise_floor"])
    zero.loc[exact_like, "value"] = 0.0  # as exact enumeration records
    fig = bias_variance(zero, estimator_palette(zero["estimator"]))
    notes = fig.estibench_left_out  # type: ignore[attr-defined]
    assert any("reinforce-loo" in note and "not on log axes" in note for note in notes)
    panels = [ax for ax in fig.axes if ax.get_title() == "bernoulli_vae: distribution"]
    assert panels and panels[0].axison  # the other estimators are drawn there
    assert not [t for t in panels[0].texts if "not on log axes" in t.get_text()]
