"""Timings taken on a busy machine: how many, said once at the top of a report; the cost table
marks each row timed so ("(busy)")."""

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
    load = busy["time/load_1min"].max()
    cores = int(busy["time/cpu_count"].max())
    return (f"Busy machine: {len(busy)} of {len(finals)} cells were timed with the 1-minute "
            f"load above the CPU count (up to {load:.1f} on {cores} cores), so their times "
            "include contention and are upper bounds; the cost table marks their rows "
            "\"(busy)\".")
