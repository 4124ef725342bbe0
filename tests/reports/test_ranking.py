"""The ranking's table from a run: one row per cell and checkpoint (never a product of the
keys), IWAE-K objectives ranked per K, and the answer says when the bias was not measured."""

from __future__ import annotations

from estibench import reports
from estibench.reports.aggregate import completed
from estibench.reports.ranking import _wide, answer, ranking
from tests.reports.fabricate import fabricate_run


def test_one_row_per_cell_and_step(tmp_path):
    frame = reports.load(fabricate_run(tmp_path / "run"))
    wide = _wide(frame)
    expected = completed(frame).drop_duplicates(["run", "cell_id", "step"])
    assert len(wide) == len(expected)  # a product of the keys had 68 million rows


def test_iwae_objectives_are_ranked_per_k_and_unmeasured_bias_is_said(tmp_path):
    frame = reports.load(fabricate_run(tmp_path / "run"))
    table = ranking(frame)
    assert len(table) and table["objective"].nunique() >= 1
    no_bias = table[table["bias_against"] == "not measured"]
    assert len(no_bias)  # the fabricated run has objectives without an exact gradient
    lines = answer(table[table["objective"].isin(no_bias["objective"])])
    assert all("the MSE is the variance alone" in line for line in lines)
    iwae = frame.copy()
    iwae["bound"] = "iwae"
    objectives = set(ranking(iwae)["objective"])
    assert all(" (K = " in o for o in objectives)
