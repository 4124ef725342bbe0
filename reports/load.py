"""Timings taken on a busy machine: which cells, said once at the top of a report."""

from __future__ import annotations

import pandas as pd

from estibench.reports.aggregate import final_values


def busy_note(frame: pd.DataFrame) -> str:
    """A sentence naming the cells whose throughput was timed with the load above the CPU
    count, or '' when none was (or no load was recorded)."""
    finals = final_values(frame)
    if "time/busy" not in finals.columns:
        return ""
    busy = finals[finals["time/busy"] == 1]
    if busy.empty:
        return ""
    pairs = sorted({f"{o} / {e}" for o, e in zip(busy["objective"], busy["estimator"],
                                                   strict=True)})
    load = busy["time/load_1min"].max()
    cores = int(busy["time/cpu_count"].max())
    return (f"Busy machine: {len(busy)} of {len(finals)} cells were timed with the 1-minute "
            f"load above the CPU count (up to {load:.1f} on {cores} cores), so their times "
            f"include contention and are upper bounds: {', '.join(pairs)}.")
