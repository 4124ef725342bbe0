"""Checking a run's claims against the noise.

    results = check_run(run_dir)       # one ClaimResult per claim of the run's stored suite
    results[0].verdict   # reproduced | not reproduced | incomplete | inconclusive | not run

A claim splits into parts: one per objective (`objectives`), per checkpoint (step "every") and,
for a trend, per consecutive pair of cells. Each part is an interval at level 1 - alpha / parts
(Bonferroni, so a claim is called "not reproduced" by chance with probability at most alpha):

- the seeds' spread (every cell with >= 2 ok seeds): a paired t interval of the differences
  seed by seed when both cells ran the same seeds (they share initialisation and data order),
  else Welch's t interval of the difference of seed means; a one-sample t interval against a
  value;
- otherwise the metric's own 95% interval (`<metric>_ci_lo/hi`, e.g. the total variance's), read
  as a normal interval on the log10 scale where it is positive: se = width / (2 x 1.96), and for
  several seeds the mean of their estimates. A log10 metric uses the log10 of the interval.

A part is "reproduced" when its interval lies on the claimed side of zero (or inside the
tolerance band of "=="), "not reproduced" when it lies wholly on the other side (or outside the
band), "inconclusive" otherwise; "incomplete" when a seed of a cell the suite plans was never
run (an interrupted run: resume it), and "not run" when a cell failed, does not apply (an
optional estimator that is not registered), was left out by a command-line override or lacks
the metric. The claim is "not reproduced" if any part is, else "incomplete", "not run",
"inconclusive" if any part is (in that order), else "reproduced".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from estibench.benchmarks.results.store import CELL_CONFIG_KEYS, Store
from estibench.benchmarks.suites.claims import CellRef, Claim
from estibench.benchmarks.suites.metric_names import interval_metrics

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
INCOMPLETE = "incomplete"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCOMPLETE, INCONCLUSIVE, NOT_RUN)
NORMAL = NormalDist()
Z95 = NORMAL.inv_cdf(0.975)  # the stored intervals are 95%


@dataclass(frozen=True)
class Part:
    """One tested piece of a claim, with its numbers (None where they do not apply).

    left, right: the two estimates (right is the claimed value for a value claim);
    difference, lo, hi: left - right and its interval, on `scale` (log10: a log10 ratio);
    p: one-sided p-value of the claimed direction (TOST for "=="); method: how noise was read.
    """

    label: str
    verdict: str
    left: float | None = None
    right: float | None = None
    difference: float | None = None
    lo: float | None = None
    hi: float | None = None
    p: float | None = None
    scale: str = "linear"
    method: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ClaimResult:
    index: int
    claim: Claim
    verdict: str
    parts: list[Part] = field(default_factory=list)

    @property
    def deciding(self) -> Part | None:
        """The part that decides the verdict: the first with the claim's verdict, the least
        significant one (largest p) among equals."""
        same = [p for p in self.parts if p.verdict == self.verdict]
        if not same:
            return None
        if self.verdict in (REPRODUCED, INCONCLUSIVE):
            return max(same, key=lambda p: -1.0 if p.p is None else p.p)
        return same[0]

    def evidence(self) -> str:
        """The deciding part's numbers in one line."""
        part = self.deciding
        if part is None:
            return ""
        text = describe(part)
        if len(self.parts) > 1:
            counts = {v: sum(p.verdict == v for p in self.parts) for v in VERDICTS}
            tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            text += f" [{part.label}; parts: {tally}]"
        return text


def _g(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def describe(part: Part) -> str:
    if part.verdict in (NOT_RUN, INCOMPLETE):
        return part.reason
    what = "log10 ratio" if part.scale == "log10" else "difference"
    text = (f"{_g(part.left)} vs {_g(part.right)}: {what} {_g(part.difference)} "
            f"[{_g(part.lo)}, {_g(part.hi)}], p = {_g(part.p)}")
    return "; ".join(x for x in (text, part.method, part.reason) if x)


# ------------------------------------------------------------------------------ run data


@dataclass(frozen=True)
class RunData:
    """A run's cells (objective, estimator, num_samples, seed, status, reason) and metrics."""

    cells: pd.DataFrame
    metrics: pd.DataFrame  # cell_id, step, metric, value
    checkpoints: list[int]
    # what the suite plans: the seeds of every cell, and the labels it runs
    seeds: tuple[int, ...] = ()
    objectives: frozenset[str] = frozenset()
    estimators: frozenset[str] = frozenset()

    @staticmethod
    def load(run_dir: str | Path, suite: Any) -> RunData:
        with Store.open(run_dir, create=False) as store:
            cells = store.cells(CELL_CONFIG_KEYS)
            metrics = store.metrics()
        for column in ("objective", "estimator", "num_samples", "seed"):
            cells[column] = [c.get(column) for c in cells["config"]]
        cells = cells.drop_duplicates("key", keep="last")  # a resumed cell: its latest record
        steps = suite.training.steps
        checkpoints = sorted({steps if c == -1 else c for c in suite.metrics.checkpoints})
        return RunData(cells, metrics[metrics["cell_id"].isin(cells["id"])], checkpoints,
                       tuple(suite.seeds), frozenset(o.id for o in suite.objectives),
                       frozenset(e.id for e in suite.estimators))


@dataclass(frozen=True)
class Sample:
    """One cell's metric over its ok seeds, with each seed's 95% interval where stored."""

    name: str
    seeds: tuple[int, ...]
    values: np.ndarray
    intervals: np.ndarray | None  # (n, 2) or None
    interval_is_log10: bool  # the interval is of 10**value
    dropped: tuple[int, ...] = ()  # ok seeds whose metric is not finite: left out, and said


class NotRun(Exception):
    """A part that cannot be checked; the message says why."""


class Incomplete(Exception):
    """A part whose cells the run has not finished; the message names the missing seeds."""


def _name(ref: CellRef, objective: str) -> str:
    s = "" if ref.num_samples is None else f" S={ref.num_samples}"
    return f"{objective}/{ref.estimator}{s}"


def _sample(data: RunData, ref: CellRef, objective: str, metric: str,
            step: str | int) -> Sample:
    c = data.cells
    rows = c[(c["objective"] == objective) & (c["estimator"] == ref.estimator)]
    if ref.num_samples is not None:
        rows = rows[rows["num_samples"] == ref.num_samples]
    name = _name(ref, objective)
    if objective in data.objectives and ref.estimator in data.estimators:
        missing = sorted(set(data.seeds) - {int(s) for s in rows["seed"]})
        if missing:
            raise Incomplete(f"{name}: seed(s) {', '.join(map(str, missing))} never ran (the "
                             "run is incomplete: `estibench run --resume RUN_DIR` finishes it)")
    if rows.empty:
        raise NotRun(f"{name}: no cell in the run")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        first = rows.iloc[0]
        raise NotRun(f"{name}: {first['status'].replace('_', ' ')}: {first['reason']}")
    m = data.metrics[data.metrics["cell_id"].isin(ok["id"])]
    lo_name, hi_name, log10 = interval_metrics(metric)
    values, intervals = [], []
    for cell_id in ok["id"]:
        own = m[m["cell_id"] == cell_id]
        rows_metric = own[own["metric"] == metric]
        if rows_metric.empty:
            raise NotRun(f"{name}: metric {metric} not recorded")
        at = int(rows_metric["step"].max()) if step == "final" else int(step)
        here = own[own["step"] == at].set_index("metric")["value"]
        if metric not in here.index:
            raise NotRun(f"{name}: metric {metric} not recorded at step {at}")
        values.append(float(here[metric]))
        if lo_name in here.index and hi_name in here.index:
            intervals.append((float(here[lo_name]), float(here[hi_name])))
    finite = np.isfinite(values)
    if log10 and all(v == -math.inf for v in values):
        # log10 of an exactly zero variance (a deterministic estimate, DisARM at phi = 0):
        # a value without noise, below every finite one (see `_exactly_zero`)
        seeds = tuple(int(s) for s in ok["seed"])
        return Sample(name, seeds, np.full(len(values), -np.inf), None, log10)
    if not finite.any():
        raise NotRun(f"{name}: {metric} is not finite ({values[0]})")
    values_arr = np.asarray(values)[finite]
    box = np.asarray(intervals)[finite] if len(intervals) == len(values) else None
    seeds = tuple(int(s) for s, keep in zip(ok["seed"], finite, strict=True) if keep)
    dropped = tuple(int(s) for s, keep in zip(ok["seed"], finite, strict=True) if not keep)
    return Sample(name, seeds, values_arr, box, log10, dropped)


# ------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float
    dof: float  # inf: normal
    scale: str  # "linear" or "log10" (the test is on log10 of the metric)


def _route(samples: list[Sample], noise: str) -> str:
    if noise == "seeds" or (noise == "auto" and all(len(s.values) >= 2 for s in samples)):
        short = [s.name for s in samples if len(s.values) < 2]
        if short:
            raise _Inconclusive(f"noise = seeds needs >= 2 ok seeds: {', '.join(short)}")
        return "seeds"
    missing = [s.name for s in samples if s.intervals is None]
    if missing:
        raise _Inconclusive(f"one seed and no stored interval for the metric: "
                            f"{', '.join(missing)}")
    return "interval"


class _Inconclusive(Exception):
    """No noise estimate: the part is inconclusive; the message says why."""


def _estimate(sample: Sample, route: str, log_scale: bool) -> Estimate:
    v = sample.values
    if route == "seeds":
        n = len(v)
        return Estimate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)), n - 1.0, "linear")
    assert sample.intervals is not None
    lo, hi = sample.intervals[:, 0], sample.intervals[:, 1]
    if sample.interval_is_log10:  # the metric is log10 of what the interval bounds
        se = (np.log10(hi) - np.log10(lo)) / (2 * Z95)
        return Estimate(float(v.mean()), _mean_se(se), math.inf, "linear")
    if log_scale:
        se = (np.log10(hi) - np.log10(lo)) / (2 * Z95)
        return Estimate(float(np.log10(v).mean()), _mean_se(se), math.inf, "log10")
    return Estimate(float(v.mean()), _mean_se((hi - lo) / (2 * Z95)), math.inf, "linear")


def _mean_se(se: np.ndarray) -> float:
    return float(np.sqrt((se**2).sum()) / len(se))


def _positive_intervals(samples: list[Sample]) -> bool:
    return all(s.intervals is not None and not s.interval_is_log10
               and (s.intervals[:, 0] > 0).all() and (s.values > 0).all() for s in samples)


def _welch_dof(a: Estimate, b: Estimate) -> float:
    if math.isinf(a.dof) or math.isinf(b.dof):
        return math.inf
    num = (a.se**2 + b.se**2) ** 2
    den = (a.se**4 / a.dof if a.se else 0.0) + (b.se**4 / b.dof if b.se else 0.0)
    return num / den if den > 0 else math.inf


def _quantile(level: float, dof: float) -> float:
    """The two-sided (1 - level) critical value of t(dof) (normal when dof is inf)."""
    if math.isinf(dof):
        return NORMAL.inv_cdf(1 - level / 2)
    from scipy import stats  # scipy comes with scikit-learn; imported late, it is slow

    return float(stats.t.ppf(1 - level / 2, dof))


def _sf(x: float, dof: float) -> float:
    if math.isinf(dof):
        return 0.5 * math.erfc(x / math.sqrt(2))  # no cancellation in the far tail
    from scipy import stats

    return float(stats.t.sf(x, dof))


def _back(x: float, scale: str) -> float:
    return 10.0**x if scale == "log10" else x


def _method(route: str, samples: list[Sample], level: float) -> str:
    return _route_text(route, samples, level) + "".join(
        f"; {s.name}: seed(s) {', '.join(map(str, s.dropped))} left out (metric not finite)"
        for s in samples if s.dropped)


def _route_text(route: str, samples: list[Sample], level: float) -> str:
    conf = f"{100 * (1 - level):.4g}% interval"
    if route == "paired":
        return f"{conf}, paired t over seeds (n = {len(samples[0].values)})"
    if route == "seeds":
        ns = ", ".join(str(len(s.values)) for s in samples)
        test = "Welch t" if len(samples) == 2 else "one-sample t"
        return f"{conf}, {test} over seeds (n = {ns})"
    return f"{conf} from the metric's own 95% intervals"


def _directional(label: str, diff: float, se: float, dof: float, sign: int, level: float,
                 **numbers: Any) -> Part:
    """Claim: sign * diff > 0."""
    if se == 0:  # deterministic (exact values): the sign decides
        verdict = INCONCLUSIVE if diff == 0 else REPRODUCED if sign * diff > 0 else NOT_REPRODUCED
        return Part(label, verdict, difference=diff, lo=diff, hi=diff,
                    p=0.0 if verdict == REPRODUCED else 1.0, **numbers)
    half = _quantile(level, dof) * se
    lo, hi = diff - half, diff + half
    s_lo, s_hi = sorted((sign * lo, sign * hi))
    verdict = REPRODUCED if s_lo > 0 else NOT_REPRODUCED if s_hi < 0 else INCONCLUSIVE
    return Part(label, verdict, difference=diff, lo=lo, hi=hi, p=_sf(sign * diff / se, dof),
                **numbers)


def _exactly_zero(label: str, a: Sample, b: Sample, sign: int) -> Part | None:
    """A side whose log10 metric is -inf in every seed (an exactly zero variance) is below the
    other without noise: the claim holds or fails outright; None when neither side is."""
    zero_a, zero_b = bool(np.isneginf(a.values).all()), bool(np.isneginf(b.values).all())
    if not (zero_a or zero_b):
        return None
    left, right = float(a.values.mean()), float(b.values.mean())
    if zero_a and zero_b:
        return Part(label, INCONCLUSIVE, left=left, right=right,
                    reason="both are exactly zero (log10 = -inf): no order")
    holds = zero_b if sign > 0 else zero_a
    return Part(label, REPRODUCED if holds else NOT_REPRODUCED, left=left, right=right,
                reason="one side is exactly zero in every seed (log10 = -inf): the order "
                       "needs no noise estimate")


def _compare(label: str, a: Sample, b: Sample, sign: int, noise: str, level: float) -> Part:
    exact = _exactly_zero(label, a, b, sign)
    if exact is not None:
        return exact
    try:
        route = _route([a, b], noise)
    except _Inconclusive as why:
        return Part(label, INCONCLUSIVE, left=float(a.values.mean()),
                    right=float(b.values.mean()), reason=str(why))
    log_scale = route == "interval" and _positive_intervals([a, b])
    ea, eb = _estimate(a, route, log_scale), _estimate(b, route, log_scale)
    scale = ea.scale
    numbers = {"left": _back(ea.mean, scale), "right": _back(eb.mean, scale), "scale": scale}
    if route == "seeds" and a.seeds == b.seeds and len(set(a.seeds)) == len(a.seeds):
        # The same seeds on both sides share their initialisation and data order: the
        # differences seed by seed are independent, and free of that shared spread.
        d = a.values - b.values
        return _directional(label, float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))),
                            len(d) - 1.0, sign, level, **numbers,
                            method=_method("paired", [a, b], level))
    return _directional(label, ea.mean - eb.mean, math.hypot(ea.se, eb.se), _welch_dof(ea, eb),
                        sign, level, **numbers, method=_method(route, [a, b], level))


def _against_value(label: str, a: Sample, claim: Claim, level: float) -> Part:
    value = float(claim.value)  # type: ignore[arg-type]
    try:
        route = _route([a], claim.noise)
    except _Inconclusive as why:
        return Part(label, INCONCLUSIVE, left=float(a.values.mean()), right=value,
                    reason=str(why))
    log_scale = route == "interval" and _positive_intervals([a]) and value > 0
    e = _estimate(a, route, log_scale)
    target = math.log10(value) if e.scale == "log10" else value
    method = _method(route, [a], level)
    numbers = {"left": _back(e.mean, e.scale), "right": value, "scale": e.scale,
               "method": method}
    if claim.relation != "==":
        sign = 1 if claim.relation == ">" else -1
        return _directional(label, e.mean - target, e.se, e.dof, sign, level, **numbers)
    tol = float(claim.tolerance)  # type: ignore[arg-type]
    if e.scale == "log10":
        band = (math.log10(value * (1 - tol)), math.log10(value * (1 + tol)))
    else:
        band = tuple(sorted((value * (1 - tol), value * (1 + tol))))
    half = _quantile(level, e.dof) * e.se
    lo, hi = e.mean - half, e.mean + half
    inside = band[0] < lo and hi < band[1]
    outside = hi < band[0] or lo > band[1]
    verdict = REPRODUCED if inside else NOT_REPRODUCED if outside else INCONCLUSIVE
    if e.se > 0:  # TOST: both one-sided tests must reject
        p = max(_sf((e.mean - band[0]) / e.se, e.dof), _sf((band[1] - e.mean) / e.se, e.dof))
    else:
        p = 0.0 if band[0] < e.mean < band[1] else 1.0
    numbers["method"] = f"{method}; band {_g(_back(band[0], e.scale))}.." \
                        f"{_g(_back(band[1], e.scale))} (±{100 * tol:g}%)"
    return Part(label, verdict, difference=_back(e.mean, e.scale) - value,
                lo=_back(lo, e.scale) - value, hi=_back(hi, e.scale) - value, p=p,
                **numbers | {"scale": "linear"})  # reported in the metric's own units


# ------------------------------------------------------------------------------ claims


def _steps(claim: Claim, data: RunData) -> list[str | int]:
    if claim.step == "every":
        return list(data.checkpoints)
    return [claim.step]


def _plan(claim: Claim, data: RunData) -> list[tuple[str, list[tuple[CellRef, str, Any]]]]:
    """(label, [(cell, objective, step) ...]) for each part."""
    plans = []
    objectives = claim.objectives or [None]
    for objective in objectives:
        for step in _steps(claim, data):
            def at(ref: CellRef, objective=objective, step=step) -> tuple[CellRef, str, Any]:
                return ref, ref.objective or objective, ref.step if ref.step is not None else step

            where = ", ".join(x for x in (objective and f"objective {objective}",
                                          step != "final" and f"step {step}") if x)
            if claim.cells is not None:
                for a, b in zip(claim.cells, claim.cells[1:], strict=False):
                    pair = f"{_name(a, at(a)[1])} -> {_name(b, at(b)[1])}"
                    plans.append((", ".join(x for x in (where, pair) if x), [at(a), at(b)]))
            else:
                refs = [claim.left] + ([claim.right] if claim.right is not None else [])
                plans.append((where or "final", [at(r) for r in refs if r is not None]))
    return plans


def check_claim(index: int, claim: Claim, data: RunData) -> ClaimResult:
    plans = _plan(claim, data)
    level = claim.alpha / len(plans)
    parts = []
    for label, cells in plans:
        samples, missing = [], []
        try:
            for ref, obj, step in cells:
                try:
                    samples.append(_sample(data, ref, obj, claim.metric, step))
                except Incomplete as why:  # every cell's missing seeds, not the first's only
                    missing.append(str(why))
        except NotRun as why:
            parts.append(Part(label, NOT_RUN, reason=str(why)))
            continue
        if missing:
            parts.append(Part(label, INCOMPLETE, reason="; ".join(missing)))
            continue
        if claim.kind == "value":
            parts.append(_against_value(label, samples[0], claim, level))
        elif claim.kind == "compare":
            sign = 1 if claim.relation == ">" else -1
            if claim.relation == "==":
                raise AssertionError("validated: == compares with a value")
            parts.append(_compare(label, samples[0], samples[1], sign, claim.noise, level))
        else:
            # increasing: each next cell above the previous one (later minus earlier > 0)
            sign = 1 if claim.direction == "increasing" else -1
            parts.append(_compare(label, samples[1], samples[0], sign, claim.noise, level))
    verdicts = {p.verdict for p in parts}
    verdict = next(v for v in (NOT_REPRODUCED, INCOMPLETE, NOT_RUN, INCONCLUSIVE, REPRODUCED)
                   if v in verdicts)
    return ClaimResult(index, claim, verdict, parts)


def check_claims(suite: Any, data: RunData) -> list[ClaimResult]:
    return [check_claim(i, c, data) for i, c in enumerate(suite.claims)]


def quick_note(run_dir: str | Path, results: list[ClaimResult]) -> str:
    """Why claims are inconclusive in a quick run (empty when the run is not quick or none is):
    quick mode trains and measures less, so claims that need precision stay undecided."""
    from estibench.benchmarks.results.rundir import stored_suite

    undecided = [f"#{r.index}" for r in results if r.verdict == INCONCLUSIVE]
    if not undecided or stored_suite(Path(run_dir)).mode != "quick":
        return ""
    return (f"This run used the suite's quick mode (--quick: fewer steps, replicas and seeds), "
            f"which is expected to leave claims that need precision inconclusive: "
            f"{', '.join(undecided)}. Run without --quick to decide them.")


def check_run(run_dir: str | Path) -> list[ClaimResult]:
    """Check the claims of the suite stored with the run (RUN_DIR/suite.json)."""
    from estibench.benchmarks.results.rundir import stored_suite

    suite = stored_suite(Path(run_dir))
    if not suite.claims:
        return []
    return check_claims(suite, RunData.load(run_dir, suite))


__all__ = ["INCOMPLETE", "VERDICTS", "ClaimResult", "Part", "RunData", "check_claims",
           "check_run", "describe", "quick_note"]
