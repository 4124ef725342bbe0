"""Claims: the statistics on fabricated stores, validation with field paths, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from estibench.benchmarks.claims.check import (
    INCOMPLETE,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    check_run,
)
from estibench.benchmarks.results.rundir import SUITE_FILENAME
from estibench.benchmarks.results.store import CellResult, Store, cell_key
from estibench.benchmarks.suites.schema import SuiteError, load_suite, parse_suite
from tests.cli_support import cli

VAR = "grad/distribution/total_variance"
LOG = "grad/distribution/log10_total_variance"


def suite_raw(claims: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    raw = {
        "name": "fabricated",
        "seeds": [0, 1, 2],
        "num_samples": [2],
        "training": {"steps": 10},
        "metrics": {"checkpoints": [0, 5, -1], "throughput": False},
        "objectives": [{"name": "bernoulli_toy", "label": "toy"},
                       {"name": "bernoulli_toy", "label": "toy2", "options": {"target": 0.4}}],
        "estimators": [{"name": "reinforce"},
                       {"name": "reinforce", "options": {"baseline": "loo"}},
                       {"name": "not_written_yet", "optional": True}],
        "claims": claims,
    }
    raw.update(extra)
    return raw


def claim(**fields: Any) -> dict[str, Any]:
    return {"statement": "a claim", "source": "a paper, figure 1", "metric": LOG, **fields}


def cell(objective: str, estimator: str) -> dict[str, str]:
    return {"objective": objective, "estimator": estimator}


def fabricate(tmp_path: Path, claims: list[dict[str, Any]],
              cells: dict[tuple[str, str], list[dict[tuple[int, str], float]] | str],
              planned_seeds: int | None = None) -> Path:
    """A run directory with the suite's claims and, per (objective, estimator), either one
    metrics dict per seed or a status ("failed", "not_applicable") for every seed. The suite
    plans `planned_seeds` seeds (default: as many as the cells give)."""
    given = [len(v) for v in cells.values() if not isinstance(v, str)]
    planned = planned_seeds or max(given, default=1)
    suite = parse_suite(suite_raw(claims, seeds=list(range(planned))))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / SUITE_FILENAME).write_text(json.dumps(suite.model_dump()))
    with Store.open(run_dir) as store:
        run_id = store.start_run("fabricated", suite.model_dump(), {})
        for (objective, estimator), seeds in cells.items():
            per_seed = [seeds] * len(suite.seeds) if isinstance(seeds, str) else seeds
            for seed, rows in enumerate(per_seed):
                config = {"objective": objective, "estimator": estimator, "seed": seed,
                          "num_samples": 2}
                status = rows if isinstance(rows, str) else "ok"
                metrics = [] if isinstance(rows, str) else [(s, m, v) for (s, m), v in
                                                            rows.items()]
                store.write_cell(run_id, CellResult(
                    cell_key(config), config, status, None if status == "ok" else "it broke",
                    0.0, 1.0, {}, metrics))
    return run_dir


def seeds(values: list[float], metric: str = LOG, step: int = 10) -> list[dict]:
    return [{(step, metric): v} for v in values]


HIGH, LOW, SIMILAR = [1.0, 1.2, 1.1], [0.1, 0.2, 0.15], [1.05, 1.25, 0.95]
COMPARE = claim(left=cell("toy", "reinforce"), relation=">", right=cell("toy", "reinforce-loo"))


@pytest.mark.parametrize(("left", "relation", "right", "verdict"), [
    (HIGH, ">", LOW, REPRODUCED),
    (HIGH, "<", LOW, NOT_REPRODUCED),
    (HIGH, ">", SIMILAR, INCONCLUSIVE),
    (LOW, "<", HIGH, REPRODUCED),
])
def test_compare_over_seeds(tmp_path: Path, left, relation, right, verdict) -> None:
    c = dict(COMPARE, relation=relation)
    run = fabricate(tmp_path, [c], {("toy", "reinforce"): seeds(left),
                                    ("toy", "reinforce-loo"): seeds(right)})
    (result,) = check_run(run)
    assert result.verdict == verdict
    (part,) = result.parts
    assert part.left == pytest.approx(np.mean(left)) and part.right == pytest.approx(
        np.mean(right))
    # the oracle: scipy's paired t test (the same seeds on both sides), one-sided
    alternative = "greater" if relation == ">" else "less"
    paired = stats.ttest_rel(left, right, alternative=alternative)
    assert part.p == pytest.approx(paired.pvalue, rel=1e-9)
    ci = stats.ttest_rel(left, right).confidence_interval(0.95)
    assert (part.lo, part.hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert "paired t over seeds (n = 3)" in part.method


def test_welch_when_the_seeds_differ(tmp_path: Path) -> None:
    # seed 3 of reinforce failed: the two cells have different seeds
    run = fabricate(tmp_path, [COMPARE], {("toy", "reinforce"): [*seeds(HIGH), "failed"],
                                          ("toy", "reinforce-loo"): seeds(SIMILAR + [0.9])})
    (part,) = check_run(run)[0].parts
    assert "Welch t over seeds (n = 3, 4)" in part.method
    welch = stats.ttest_ind(HIGH, SIMILAR + [0.9], equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert (part.lo, part.hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    one_sided = stats.ttest_ind(HIGH, SIMILAR + [0.9], equal_var=False, alternative="greater")
    assert part.p == pytest.approx(one_sided.pvalue, rel=1e-9)


def test_a_seed_whose_metric_is_not_finite_is_left_out_and_named(tmp_path: Path) -> None:
    """Seed 1 of reinforce recorded -inf (log10 of a zero variance) beside finite seeds: the
    part is decided on the other seeds, and its method says which seed was left out."""
    run = fabricate(tmp_path, [COMPARE], {("toy", "reinforce"): seeds([1.0, -math.inf, 1.1]),
                                          ("toy", "reinforce-loo"): seeds(LOW)})
    (part,) = check_run(run)[0].parts
    assert "Welch t over seeds (n = 2, 3)" in part.method
    assert part.method.endswith("; toy/reinforce: seed(s) 1 left out (metric not finite)")


def test_not_run_when_failed_or_not_registered_incomplete_when_never_run(tmp_path: Path
                                                                          ) -> None:
    claims = [
        COMPARE,  # toy/reinforce-loo never ran
        claim(left=cell("toy2", "reinforce"), relation=">", right=cell("toy", "reinforce")),
        claim(left=cell("toy", "not_written_yet"), relation="<", right=cell("toy", "reinforce")),
    ]
    run = fabricate(tmp_path, claims, {("toy", "reinforce"): seeds(HIGH),
                                       ("toy2", "reinforce"): "failed",
                                       ("toy", "not_written_yet"): "not_applicable"})
    results = check_run(run)
    assert [r.verdict for r in results] == [INCOMPLETE, NOT_RUN, NOT_RUN]
    assert "toy/reinforce-loo: seed(s) 0, 1, 2 never ran" in results[0].evidence()
    assert "failed: it broke" in results[1].evidence()
    assert "not applicable" in results[2].evidence()


def test_a_killed_run_gives_incomplete_claims_naming_the_missing_seed(tmp_path: Path) -> None:
    """Seeds 0 and 1 of both cells finished, seed 2 never ran: no verdict from two seeds of
    three, and `estibench claims` exits 1 saying how to finish the run."""
    run = fabricate(tmp_path, [COMPARE], {("toy", "reinforce"): seeds(HIGH[:2]),
                                          ("toy", "reinforce-loo"): seeds(LOW[:2])},
                    planned_seeds=3)
    (result,) = check_run(run)
    assert result.verdict == INCOMPLETE
    assert "seed(s) 2 never ran" in result.evidence() and "--resume" in result.evidence()
    # both cells of the part miss seed 2: both are named, not the first only
    (part,) = result.parts
    assert "toy/reinforce: seed(s) 2" in part.reason and "toy/reinforce-loo: seed(s) 2" in (
        part.reason)
    shown = cli("claims", str(run))
    assert shown.returncode == 1
    assert "1 claim(s) incomplete" in shown.stderr and "--resume" in shown.stderr


def interval_rows(estimate: float, lo: float, hi: float, step: int = 10) -> list[dict]:
    return [{(step, VAR): estimate, (step, f"{VAR}_ci_lo"): lo, (step, f"{VAR}_ci_hi"): hi,
             (step, LOG): math.log10(estimate)}]


EQUALS_4 = claim(metric=VAR, left=cell("toy", "reinforce"), relation="==", value=4.0,
                 tolerance=0.05)


@pytest.mark.parametrize(("rows", "verdict"), [
    ((4.01, 3.96, 4.06), REPRODUCED),
    ((4.1, 3.0, 5.5), INCONCLUSIVE),
    ((5.0, 4.8, 5.2), NOT_REPRODUCED),
])
def test_equals_within_tolerance_from_the_metric_interval(tmp_path: Path, rows, verdict) -> None:
    run = fabricate(tmp_path, [EQUALS_4], {("toy", "reinforce"): interval_rows(*rows)})
    (result,) = check_run(run)
    assert result.verdict == verdict
    (part,) = result.parts
    assert "metric's own 95% intervals" in part.method and "band 3.8..4.2" in part.method
    # one part at alpha = 0.05: the stored 95% interval, read on the log10 scale, comes back
    estimate, lo, hi = rows
    centre = math.log10(estimate)
    half = (math.log10(hi) - math.log10(lo)) / 2
    assert part.lo + 4 == pytest.approx(10 ** (centre - half))
    assert part.hi + 4 == pytest.approx(10 ** (centre + half))


def test_log10_metric_uses_the_log_of_the_interval(tmp_path: Path) -> None:
    run = fabricate(tmp_path, [COMPARE], {("toy", "reinforce"): interval_rows(10.0, 8.0, 12.5),
                                          ("toy", "reinforce-loo"): interval_rows(1.0, 0.8, 1.25)})
    (part,) = check_run(run)[0].parts
    assert part.verdict == REPRODUCED and part.scale == "linear"
    se = (math.log10(12.5) - math.log10(8.0)) / (2 * stats.norm.ppf(0.975))
    assert part.difference == pytest.approx(1.0)
    assert part.hi - part.difference == pytest.approx(stats.norm.ppf(0.975) * se * math.sqrt(2))


def test_one_seed_without_interval_is_inconclusive(tmp_path: Path) -> None:
    run = fabricate(tmp_path, [COMPARE], {("toy", "reinforce"): seeds([5.0]),
                                          ("toy", "reinforce-loo"): seeds([1.0])})
    (result,) = check_run(run)
    assert result.verdict == INCONCLUSIVE
    assert "no stored interval" in result.evidence()


def test_every_checkpoint_and_objectives_split_into_corrected_parts(tmp_path: Path) -> None:
    c = claim(objectives=["toy", "toy2"], step="every", left={"estimator": "reinforce"},
              relation=">", right={"estimator": "reinforce-loo"})
    good = [{(s, LOG): v for s in (0, 5, 10)} for v in HIGH]
    bad = [{**rows, (5, LOG): -1.0} for rows in good]  # toy2 at step 5: far below
    low = [{(s, LOG): v for s in (0, 5, 10)} for v in LOW]
    run = fabricate(tmp_path, [c], {("toy", "reinforce"): good, ("toy", "reinforce-loo"): low,
                                    ("toy2", "reinforce"): bad, ("toy2", "reinforce-loo"): low})
    (result,) = check_run(run)
    assert len(result.parts) == 6
    assert all("99.17% interval" in p.method for p in result.parts)  # 1 - 0.05 / 6
    assert result.verdict == NOT_REPRODUCED
    assert result.deciding.label == "objective toy2, step 5"
    assert sum(p.verdict == REPRODUCED for p in result.parts) == 5


def test_trend_over_cells(tmp_path: Path) -> None:
    c = claim(cells=[cell("toy", "reinforce"), cell("toy2", "reinforce"),
                     cell("toy", "reinforce-loo")], direction="decreasing")
    data = {("toy", "reinforce"): seeds([3.0, 3.1, 2.9]), ("toy2", "reinforce"): seeds(HIGH),
            ("toy", "reinforce-loo"): seeds(LOW)}
    (result,) = check_run(fabricate(tmp_path, [c], data))
    assert result.verdict == REPRODUCED
    assert [p.label for p in result.parts] == ["toy/reinforce -> toy2/reinforce",
                                               "toy2/reinforce -> toy/reinforce-loo"]
    assert all(p.difference < 0 for p in result.parts)


def test_same_cell_at_two_steps_and_deterministic_values(tmp_path: Path) -> None:
    c = claim(metric="test/exact_objective", left={"objective": "toy", "estimator": "reinforce"},
              relation=">", right={"objective": "toy", "estimator": "reinforce", "step": 0})
    rows = [{(0, "test/exact_objective"): -0.25, (10, "test/exact_objective"): v}
            for v in (-0.2, -0.21, -0.19)]
    (result,) = check_run(fabricate(tmp_path, [c], {("toy", "reinforce"): rows}))
    assert result.verdict == REPRODUCED
    assert result.parts[0].right == -0.25


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("fields", "path", "shown"), [
    ({"left": cell("toy", "nope")}, "claims.0.left.estimator", "'nope'"),
    ({"right": cell("toy3", "reinforce")}, "claims.0.right.objective", "'toy3'"),
    ({"metric": "grad/distribution/varianse"}, "claims.0.metric", "grad/{distribution,encoder}"),
    ({"metric": "test/iwae_7"}, "claims.0.metric", "test/iwae_10"),
    ({"step": 7}, "claims.0.step", "checkpoints: [0, 5, 10]"),
    ({"metric": "train/objective", "step": "every"}, "claims.0.step", "use step = \"final\""),
    ({"left": {"estimator": "reinforce"}}, "claims.0.left.objective", "list the claim's"),
    ({"objectives": ["toy", "tyo"]}, "claims.0.objectives.1", "'tyo'"),
    ({"value": 3.0}, "claims.0", "exactly one of"),
    ({"relation": "=="}, "claims.0", "tolerance"),
    ({"relation": "<>"}, "claims.0.relation", "'<>'"),
    ({"colour": "red"}, "claims.0.colour", "unknown key"),
])
def test_claim_validation_names_the_field(fields, path, shown) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(suite_raw([{**COMPARE, **fields}]))
    line = next(x for x in str(err.value).splitlines() if x.strip().startswith(path + ":"))
    assert shown in line


def test_num_samples_must_be_named_when_several() -> None:
    raw = suite_raw([COMPARE], num_samples=[1, 2])
    raw["estimators"] = [{"name": "reinforce"}, {"name": "reinforce", "options": {
        "baseline": "loo"}, "num_samples": [2]}]
    with pytest.raises(SuiteError, match=r"claims\.0\.left\.num_samples: .*\[1, 2\]: say which"):
        parse_suite(raw)
    raw["claims"] = [dict(COMPARE, left=dict(cell("toy", "reinforce"), num_samples=4))]
    with pytest.raises(SuiteError, match=r"claims\.0\.left\.num_samples: .*\(got 4\)"):
        parse_suite(raw)


def test_optional_estimator_only_when_marked() -> None:
    raw = suite_raw([])
    suite = parse_suite(raw)
    missing = suite.estimators[2]
    assert missing.id == "not_written_yet" and "not registered" in missing.missing
    raw["estimators"][2] = {"name": "not_written_yet"}
    with pytest.raises(SuiteError, match=r"estimators\.2\.name: unknown estimator"):
        parse_suite(raw)


def test_command_line_overrides_keep_the_claims_and_leave_their_parts_not_run(
        tmp_path: Path) -> None:
    """`--estimator`, `--objective` and `--steps` take cells out of a suite with claims: the
    claims stay (validated against what was left out), their parts on missing cells are "not
    run"; a label that was never in the suite is still an error."""
    from estibench.cli.plan import apply_overrides

    pinned = claim(left={**cell("toy", "reinforce"), "step": 10}, relation=">",
                   right=cell("toy2", "reinforce-loo"))
    suite = parse_suite(suite_raw([COMPARE, pinned]))
    narrowed = apply_overrides(suite, estimator="reinforce-loo", objective="toy", steps=7)
    assert [e.id for e in narrowed.estimators] == ["reinforce-loo"]
    assert narrowed.left_out.estimators == ["reinforce", "not_written_yet"]
    assert narrowed.left_out.objectives == ["toy2"] and narrowed.left_out.steps == 10
    assert len(narrowed.claims) == 2
    with pytest.raises(SuiteError, match="claims.0.right.estimator"):
        parse_suite({**narrowed.model_dump(exclude_defaults=True),
                     "claims": [claim(left=cell("toy", "reinforce"), relation=">",
                                      right=cell("toy", "never-there"))]})

    written = tmp_path / "with_left_out.toml"
    written.write_text('name = "x"\n[left_out]\nestimators = ["anything"]\n')
    with pytest.raises(SuiteError, match="left_out .* cannot set it"):
        load_suite(written)

    run_dir = fabricate(tmp_path, [COMPARE], {("toy", "reinforce-loo"): [
        {(10, LOG): 1.0}, {(10, LOG): 1.1}, {(10, LOG): 0.9}]})
    (run_dir / SUITE_FILENAME).write_text(json.dumps(
        apply_overrides(parse_suite(suite_raw([COMPARE])), estimator="reinforce-loo")
        .model_dump()))
    [result] = check_run(run_dir)
    assert result.verdict == "not run"
    assert "toy/reinforce: no cell in the run" in result.parts[0].reason


def test_quick_mode_overrides_and_is_recorded() -> None:
    raw = suite_raw([], quick={"seeds": [0], "training": {"steps": 5},
                               "metrics": {"checkpoints": [0, -1], "replicas": 8}})
    full, quick = parse_suite(raw), parse_suite(raw, quick=True)
    assert (full.mode, full.training.steps, full.seeds) == ("full", 10, [0, 1, 2])
    assert (quick.mode, quick.training.steps, quick.seeds, quick.metrics.replicas) == (
        "quick", 5, [0], 8)
    assert quick.metrics.throughput is False  # what quick does not name stays
    assert parse_suite(quick.model_dump()).training.steps == 5  # stored and reloaded as is
    raw["quick"]["training"] = {"stepz": 5}
    with pytest.raises(SuiteError, match=r"quick\.training\.stepz: unknown key"):
        parse_suite(raw)
    with pytest.raises(SuiteError, match="no \\[quick\\] table"):
        parse_suite(suite_raw([]), quick=True)


def test_shipped_suites_with_claims_load_in_both_modes() -> None:
    for name in ("mohamed2020", "relax-toy", "dreg-iwae", "jang2017", "sbn"):
        for quick in (False, True):
            suite = load_suite(name, quick=quick)
            assert suite.claims and suite.mode == ("quick" if quick else "full")


# ------------------------------------------------------------------------------ CLI

WIDE = {"COLUMNS": "250"}  # the claims table on one line a row
CLI_SUITE = """
seeds = [0, 1]
num_samples = [2]
[training]
steps = 4
log_every = 2
[metrics]
checkpoints = [0, -1]
replicas = 200
throughput = false
[[objectives]]
name = "bernoulli_toy"
label = "toy"
[[estimators]]
name = "reinforce"
[[estimators]]
name = "reinforce"
options = { baseline = "loo" }
[[estimators]]
name = "not_written_yet"
optional = true
[[claims]]
statement = "REINFORCE's variance is above RLOO's"
source = "test"
metric = "grad/distribution/log10_total_variance"
step = "every"
left = { objective = "toy", estimator = "reinforce" }
relation = ">"
right = { objective = "toy", estimator = "reinforce-loo" }
[[claims]]
statement = "the missing estimator beats REINFORCE"
source = "test"
metric = "grad/distribution/log10_total_variance"
left = { objective = "toy", estimator = "not_written_yet" }
relation = "<"
right = { objective = "toy", estimator = "reinforce" }
[[claims]]
statement = "a wrong claim: REINFORCE's variance is below RLOO's"
source = "test"
metric = "grad/distribution/total_variance"
left = { objective = "toy", estimator = "reinforce" }
relation = "<"
right = { objective = "toy", estimator = "reinforce-loo" }
"""


def test_cli_claims_on_a_real_run(tmp_path: Path) -> None:
    path = tmp_path / "claims.toml"
    path.write_text(CLI_SUITE)
    run_dir = tmp_path / "run"
    ran = cli("run", str(path), "--out", str(run_dir), "--no-report", env=WIDE)
    assert ran.returncode == 0, ran.stderr  # a claim is a finding, not a failure
    assert "claims" in ran.stdout and "not reproduced" in ran.stdout

    checked = cli("claims", str(run_dir), env=WIDE)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    rows = [line for line in checked.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r.split()[0] for r in rows] == ["0", "1", "2"]
    assert " reproduced " in rows[0] and "not run" in rows[1] and "not reproduced" in rows[2]
    assert "1 claim(s) not reproduced: #2" in checked.stderr

    stored = json.loads((run_dir / SUITE_FILENAME).read_text())
    stored["claims"] = stored["claims"][:2]  # without the wrong claim: exit 0
    (run_dir / SUITE_FILENAME).write_text(json.dumps(stored))
    assert cli("claims", str(run_dir)).returncode == 0
    assert cli("claims", str(tmp_path / "nowhere")).returncode == 2


def test_an_exactly_zero_variance_orders_without_noise(tmp_path: Path) -> None:
    """log10 of a zero variance is -inf in every seed (DisARM at phi = 0): below any finite
    variance for certain, so the claim holds (or fails) outright instead of "not run"."""
    zero = seeds([-math.inf] * 3)
    run = fabricate(tmp_path, [COMPARE, dict(COMPARE, relation="<")],
                    {("toy", "reinforce"): seeds(HIGH), ("toy", "reinforce-loo"): zero})
    above, below = check_run(run)
    assert (above.verdict, below.verdict) == (REPRODUCED, NOT_REPRODUCED)
    assert "exactly zero" in above.parts[0].reason
    (tmp_path / "both").mkdir()
    both = fabricate(tmp_path / "both", [COMPARE], {("toy", "reinforce"): zero,
                                                     ("toy", "reinforce-loo"): zero})
    assert check_run(both)[0].verdict == INCONCLUSIVE
