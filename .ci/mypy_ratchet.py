"""Type checking: `estimators/` must be clean; the rest of the package may only get better.

    python .ci/mypy_ratchet.py

Runs mypy (configured in pyproject.toml) over `estimators/`, which must have no error, and over
`estibench/`, `benchmarks/` and `reports/`, whose error count must not exceed the number in
`.ci/mypy-baseline`; when it falls, the script says so, and the baseline is lowered by hand
in the same commit.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-baseline"


def errors(*paths: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "mypy", *paths], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    found = re.search(r"Found (\d+) errors?", done.stdout)
    return (int(found.group(1)) if found else 0), done.stdout


def main() -> int:
    clean, report = errors("estimators")
    if clean:
        print(report)
        print(f"mypy: {clean} error(s) in estimators/, which must have none")
        return 1
    count, report = errors("estibench", "benchmarks", "reports")
    allowed = int(BASELINE.read_text().split()[0])
    if count > allowed:
        print(report)
        print(f"mypy: {count} error(s) in estibench/, benchmarks/ and reports/, more than the "
              f"{allowed} of {BASELINE.relative_to(ROOT)}: fix the new ones")
        return 1
    note = (f"; lower {BASELINE.relative_to(ROOT)} to {count}" if count < allowed else "")
    print(f"mypy: estimators/ clean; {count} error(s) elsewhere (at most {allowed}){note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
