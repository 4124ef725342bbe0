"""The machine's load is recorded beside every timing and busy timings are flagged."""

from __future__ import annotations

import math
import os

import pandas as pd

import estibench
from estibench import estimators, reports
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.results.store import Store
from estibench.benchmarks.suites.schema import parse_suite
from estibench.reports.load import busy_note
from tests.reports.fabricate import fabricate_run

TIMED = {
    "name": "timed", "seeds": [0], "num_samples": [2],
    "training": {"steps": 4, "log_every": 2},
    "metrics": {"checkpoints": [-1], "replicas": 4, "throughput_min_run_time": 0.01},
    "objectives": [{"name": "bernoulli_toy"}],
    "estimators": [{"name": "reinforce", "options": {"baseline": "loo"}}],
}


def test_machine_load_is_consistent():
    load = metrics.machine_load()
    assert load["cpu_count"] == (os.cpu_count() or 1)
    assert math.isnan(load["load_1min"]) or load["load_1min"] >= 0
    assert load["busy"] == (load["load_1min"] > load["cpu_count"])
    assert load["runnable_threads"] >= -1


def test_throughput_records_the_load_beside_its_times():
    result = metrics.throughput(objectives.get("bernoulli_toy"), estimators.get("reinforce"),
                                num_samples=2, min_run_time=0.01, memory=False)
    assert result.cpu_count == (os.cpu_count() or 1) and result.load_1min >= 0
    assert result.busy == (result.load_1min > result.cpu_count)


def test_a_run_stores_the_load_and_the_report_shows_it(tmp_path):
    result = estibench.run(parse_suite(TIMED), out=tmp_path / "run", device="cpu")
    with Store.open(result.run_dir, create=False) as store:
        names = set(store.metrics()["metric"])
    assert {"time/load_1min", "time/cpu_count", "time/busy", "train/load_1min"} <= names
    html = result.report.read_text()
    assert "machine load while timed (1 min)" in html and "machine load" in html


def test_busy_timings_are_flagged(tmp_path):
    frame = reports.load(fabricate_run(tmp_path / "run"))
    assert busy_note(frame) == ""  # no load recorded: nothing claimed
    cells = frame[frame["status"] == "ok"].drop_duplicates("cell_id")
    rows = []
    for i, (_, cell) in enumerate(cells.iterrows()):
        busy = cell["estimator"] == "gumbel_softmax"
        for metric, value in (("time/busy", float(busy)), ("time/cpu_count", 2.0),
                              ("time/load_1min", 5.5 if busy else 0.5 + 0.01 * i)):
            rows.append({**cell.to_dict(), "metric": metric, "value": value, "step": 100})
    loaded = pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)
    note = busy_note(loaded)
    busy_cells = int((cells["estimator"] == "gumbel_softmax").sum())
    assert note.startswith(f"Busy machine: {busy_cells} of {len(cells)} cells")
    assert "up to 5.5 on 2 cores" in note and '"(busy)"' in note
    # the rows say which: one mark per busy row of the cost table, not a list in the note
    from estibench.reports.aggregate import summary_table
    from estibench.reports.tables import BUSY, summary_tables

    cost = next(t for title, t in summary_tables(summary_table(loaded)) if "ost" in title)
    marked = {row[1] for row in cost.rows if any(BUSY in cell for cell in row)}
    assert marked == {"gumbel_softmax"}
