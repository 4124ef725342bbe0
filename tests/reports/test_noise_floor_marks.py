"""SNR and cosine within the Monte Carlo noise of the mean are marked, not shown as signal."""

from __future__ import annotations

import math

import pandas as pd

from estibench import reports
from estibench.reports.aggregate import at_noise_floor, final_values, summary_table
from estibench.reports.tables import AT_FLOOR, summary_tables
from tests.reports.fabricate import fabricate_run


def test_the_floors_follow_from_the_mean_of_m():
    m = 64
    finals = pd.DataFrame({
        "grad/distribution/replicas": [m, m, m],
        # SNR of an unbiased estimator of a zero gradient is about 1/sqrt(M): noise
        "grad/distribution/snr_norm": [1 / math.sqrt(m), 3 / math.sqrt(m), 0.9],
        "grad/distribution/total_variance": [1.0, 1.0, 1.0],
        # ||exact|| = bias_norm / relative_bias: 0.1 (below 2 sqrt(1/64) = 0.25), 1.0
        "grad/distribution/bias_norm": [0.01, 0.1, 0.1],
        "grad/distribution/relative_bias": [0.1, 0.1, 0.1],
    })
    floors = at_noise_floor(finals)
    assert list(floors["snr_at_floor"]) == [True, False, False]
    assert list(floors["cosine_at_floor"]) == [True, False, False]


def test_the_summary_marks_the_cells_at_the_floor(tmp_path):
    frame = reports.load(fabricate_run(tmp_path / "run"))
    finals = final_values(frame)
    chosen = finals["estimator"].iloc[0]
    noisy = (frame["estimator"] == chosen) & (frame["metric"] == "grad/distribution/snr_norm")
    replicas = frame[(frame["estimator"] == chosen)
                     & (frame["metric"] == "grad/distribution/replicas")]["value"].max()
    frame.loc[noisy, "value"] = 1 / math.sqrt(replicas)
    text = "\n".join(" | ".join(row) for _, table in summary_tables(summary_table(frame))
                     for row in table.rows)
    marked = [line for line in text.splitlines() if AT_FLOOR.strip() in line]
    assert marked and all(chosen in line for line in marked)
