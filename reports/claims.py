"""The claims table that opens a report, and the per-part numbers behind each verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from estibench.reports.tables import Table, number

CLAIM_COLUMNS = ["#", "claim", "source", "verdict", "evidence"]
PART_COLUMNS = ["#", "part", "verdict", "left", "right", "difference", "interval", "p",
                "how / why"]


@dataclass(frozen=True)
class ClaimTables:
    """`claims`: one row per claim; `parts`: one row per tested part; `error`: why the claims
    could not be checked (the report still renders)."""

    claims: Table = field(default_factory=lambda: Table(CLAIM_COLUMNS, []))
    parts: Table = field(default_factory=lambda: Table(PART_COLUMNS, []))
    error: str = ""
    note: str = ""  # why claims are inconclusive (quick mode)


def claim_tables(run_dir: str | Path) -> ClaimTables:
    from estibench.benchmarks.claims.check import check_run, quick_note
    from estibench.benchmarks.results.store import StoreError
    from estibench.benchmarks.suites.schema import SuiteError

    try:
        results = check_run(run_dir)
    except (SuiteError, StoreError, OSError) as err:
        return ClaimTables(error=str(err))
    claims = [[str(r.index), r.claim.statement, r.claim.source, r.verdict, r.evidence()]
              for r in results]
    parts = []
    for r in results:
        for p in r.parts:
            what = "log10 ratio: " if p.scale == "log10" else ""
            interval = "" if p.lo is None else f"{number(p.lo)} .. {number(p.hi)}"
            how = "; ".join(x for x in (p.method, p.reason) if x)
            parts.append([str(r.index), p.label, p.verdict, number(p.left), number(p.right),
                          what + number(p.difference), interval, number(p.p), how])
    return ClaimTables(Table(CLAIM_COLUMNS, claims), Table(PART_COLUMNS, parts),
                       note=quick_note(run_dir, results))
