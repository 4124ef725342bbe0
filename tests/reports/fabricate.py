"""A fabricated run for the reports tests, written with the real
`estibench.benchmarks.results.store.Store`.

2 objectives x 3 estimators x 3 seeds; checkpoints 0/50/100. Every value is a simple function
of (objective, estimator, seed, step) given below, so tests can recompute aggregates by hand:

- ``bernoulli_vae`` has an exact log p(x) and exact gradients (bias, cosine, unbiasedness test
  metrics); ``gaussian_vae`` has a reference log p(x) and no exact gradient.
- ``pathwise`` is not applicable to ``bernoulli_vae`` (3 not-applicable cells).
- ``gaussian_vae`` / ``reinforce-loo`` / seed 2 failed at step 37 (partial curves kept).

The other reports tests import :func:`fabricate_run` from here (``tests`` is a package).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estibench.benchmarks.results.store import CellResult, Store, cell_key

SEEDS = (0, 1, 2)
# Per-seed deviations (mean 0, not symmetric) scaled by each quantity's jitter.
SEED_U = {0: -1.0, 1: 0.2, 2: 0.8}
CHECKPOINTS = (0, 50, 100)
STEPS = 100
LOG_EVERY = 10
IWAE_KS = (1, 10, 100)
NUM_SAMPLES = 4
ENVIRONMENT = {"device": "cpu", "torch": "2.13.0", "python": "3.11.9", "commit": "abc1234",
               "dirty": False, "host": "testhost", "threads": 1}


@dataclass(frozen=True)
class Objective:
    name: str
    elbo: float  # final test ELBO of a zero-offset estimator
    log_px: float
    exact: bool  # exact log p(x) and exact gradients


@dataclass(frozen=True)
class Estimator:
    label: str
    name: str
    options: dict[str, Any]
    elbo_offset: float
    log10_var: float  # final log10 total variance (distribution)
    time: float  # seconds per estimate
    bias: float  # bias norm where exact gradients exist


OBJECTIVES = (
    Objective("bernoulli_vae", elbo=-100.0, log_px=-95.0, exact=True),
    Objective("gaussian_vae", elbo=-80.0, log_px=-76.0, exact=False),
)
ESTIMATORS = (
    Estimator("reinforce-loo", "reinforce", {"baseline": "loo"}, -1.0, 2.0, 2e-3, 0.01),
    Estimator("gumbel_softmax", "gumbel_softmax", {"temperature": 1.0}, 0.5, 0.5, 1e-3, 0.3),
    Estimator("pathwise", "pathwise", {}, 1.0, -0.5, 0.8e-3, 0.01),
)
NOT_APPLICABLE = ("bernoulli_vae", "pathwise")
FAILED = ("gaussian_vae", "reinforce-loo", 2)
NOT_APPLICABLE_REASON = "pathwise needs a reparameterizable distribution; Bernoulli is not"
FAILED_REASON = "non-finite loss (nan) at training step 37"
FAILED_STEP = 37


@dataclass(frozen=True)
class Knobs:
    """What a test may change: scale factors per estimator label and per-seed noise."""

    time_factor: Mapping[str, float] | None = None
    variance_factor: Mapping[str, float] | None = None
    time_jitter: float = 0.02  # log-scale spread of time over seeds
    variance_jitter: float = 0.1  # log-scale spread of variance over seeds
    elbo_jitter: float = 0.5  # nats
    timing_iqr: float | None = 0.03  # IQR / time; None: no IQR metric
    failed_pairs: tuple[tuple[str, str], ...] = ()  # (objective, estimator) whose cells fail

    def time(self, label: str) -> float:
        return (self.time_factor or {}).get(label, 1.0)

    def variance(self, label: str) -> float:
        return (self.variance_factor or {}).get(label, 1.0)


DEFAULT_KNOBS = Knobs()


# --------------------------------------------------------------------------------------------
# The formulas (tests use them to recompute aggregates)
# --------------------------------------------------------------------------------------------


def final_elbo(o: Objective, e: Estimator, seed: int, knobs: Knobs = DEFAULT_KNOBS) -> float:
    return o.elbo + e.elbo_offset + knobs.elbo_jitter * SEED_U[seed]


def elbo_at(o: Objective, e: Estimator, seed: int, step: int,
            knobs: Knobs = DEFAULT_KNOBS) -> float:
    return final_elbo(o, e, seed, knobs) - 5.0 * (1 - step / STEPS)


def log_marginal(o: Objective, e: Estimator, seed: int, knobs: Knobs = DEFAULT_KNOBS) -> float:
    return o.log_px + e.elbo_offset + knobs.elbo_jitter * SEED_U[seed]


def total_variance(e: Estimator, seed: int, step: int, wrt: str, knobs: Knobs = DEFAULT_KNOBS,
                   num_samples: int = NUM_SAMPLES) -> float:
    """Falls as 1/S, like the variance of an average of S independent samples."""
    log10 = e.log10_var + (1.0 if wrt == "encoder" else 0.0) + 0.5 * (1 - step / STEPS)
    scale = knobs.variance(e.label) * math.exp(knobs.variance_jitter * SEED_U[seed])
    scale *= NUM_SAMPLES / num_samples
    return 10.0**log10 * scale


def time_per_estimate(e: Estimator, seed: int, knobs: Knobs = DEFAULT_KNOBS) -> float:
    return e.time * knobs.time(e.label) * math.exp(knobs.time_jitter * SEED_U[seed])


def replicas(e: Estimator, seed: int, step: int) -> int:
    """M = 128, except reinforce-loo, seed 0, final step: the cap 4096, precision not met."""
    return 4096 if (e.label, seed, step) == ("reinforce-loo", 0, STEPS) else 128


def squared_bias(e: Estimator) -> float:
    """Debiased squared bias: 0 (nothing above the floor) for the unbiased estimators."""
    return e.bias**2 if e.bias >= 0.1 else 0.0


def p_value(e: Estimator, seed: int) -> float:
    """The unbiasedness test: 1e-6 for the biased estimator, 0.3 + 0.1 seed otherwise."""
    return 1e-6 if e.bias >= 0.1 else 0.3 + 0.1 * seed


def peak_memory(e: Estimator, seed: int) -> float:
    return float(2**20 * (10 + len(e.label) + seed))


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def cell_config(o: Objective, e: Estimator, seed: int, num_samples: int = NUM_SAMPLES) -> dict:
    """A config with the keys the runner writes."""
    return {
        "suite": "fabricated", "protocol": "independent",
        "objective": o.name, "objective_name": o.name, "objective_options": {}, "kl": "analytic",
        "estimator": e.label, "estimator_name": e.name, "estimator_options": e.options,
        "trained_with": e.label, "trainer_name": e.name, "trainer_options": e.options,
        "seed": seed, "num_samples": num_samples,
        "data": {"name": "digits", "path": None},
        "training": {"steps": STEPS, "log_every": LOG_EVERY, "batch_size": 32},
        "metrics": {"checkpoints": list(CHECKPOINTS), "iwae_ks": list(IWAE_KS)},
    }


def _gradient_rows(o: Objective, e: Estimator, seed: int, step: int, knobs: Knobs,
                   num_samples: int) -> list[tuple[int, str, float]]:
    rows = []
    for wrt in ("distribution", "encoder"):
        tv = total_variance(e, seed, step, wrt, knobs, num_samples)
        values = {
            "total_variance": tv, "log10_total_variance": math.log10(tv),
            "snr_mean": 0.5 / math.sqrt(tv), "snr_norm": 1.0 / math.sqrt(tv),
            "total_variance_ci_lo": 0.8 * tv, "total_variance_ci_hi": 1.25 * tv,
            "mean_norm": 1.0,
        }
        m = replicas(e, seed, step)
        values |= {"replicas": float(m), "total_variance_rse": 0.04 if m < 4096 else 0.2,
                   "precision_target": 0.05, "precision_met": float(m < 4096)}
        if o.exact:
            # ||mean - exact||^2 = squared bias + noise floor, as `gradient_stats` defines it
            values |= {"bias_norm": math.sqrt(squared_bias(e) + tv / m),
                       "relative_bias": e.bias / 2, "cosine": 1 - e.bias,
                       "mse": squared_bias(e) + tv, "squared_bias": squared_bias(e),
                       "squared_bias_se": 0.1 * squared_bias(e) + 1e-6, "noise_floor": tv / m,
                       "p_value": p_value(e, seed)}
        rows += [(step, f"grad/{wrt}/{name}", v) for name, v in values.items()]
    return rows


def _test_rows(o: Objective, e: Estimator, seed: int, step: int,
               knobs: Knobs) -> list[tuple[int, str, float]]:
    elbo = elbo_at(o, e, seed, step, knobs)
    lpx = log_marginal(o, e, seed, knobs)
    rows = [(step, "test/elbo", elbo), (step, "test/log_marginal", lpx),
            (step, "test/log_marginal_exact", 1.0 if o.exact else 0.0),
            (step, "test/gap", lpx - elbo)]
    rows += [(step, f"test/iwae_{k}", elbo + math.log10(k)) for k in IWAE_KS]
    if o.exact:
        rows.append((step, "test/exact_objective", elbo + 0.25))
    return rows


def _time_rows(o: Objective, e: Estimator, seed: int, knobs: Knobs,
               num_samples: int) -> list[tuple[int, str, float]]:
    t = time_per_estimate(e, seed, knobs)
    rows = [(STEPS, "time/time_per_estimate", t), (STEPS, "time/time_per_step", 2 * t),
            (STEPS, "time/time_per_sample", t / num_samples),
            (STEPS, "time/estimates_per_second", 1 / t),
            (STEPS, "time/peak_memory_bytes", peak_memory(e, seed)),
            (STEPS, "time/overhead_ratio", 1.1),
            (STEPS, "estimator/evaluations", float(num_samples)),
            (STEPS, "efficiency/variance_x_time",
             total_variance(e, seed, STEPS, "distribution", knobs, num_samples) * t)]
    if knobs.timing_iqr is not None:
        rows.append((STEPS, "time/time_per_estimate_iqr", knobs.timing_iqr * t))
    return rows


def cell_rows(o: Objective, e: Estimator, seed: int, knobs: Knobs = DEFAULT_KNOBS,
              last_step: int = STEPS, num_samples: int = NUM_SAMPLES
              ) -> list[tuple[int, str, float]]:
    """Metric rows of a cell trained up to ``last_step`` (a failed cell stops early)."""
    rows: list[tuple[int, str, float]] = []
    for step in range(0, last_step + 1):
        if step in CHECKPOINTS:
            rows += _gradient_rows(o, e, seed, step, knobs, num_samples)
            rows += _test_rows(o, e, seed, step, knobs)
        if step < STEPS and step % LOG_EVERY == 0:
            rows.append((step, "train/objective", elbo_at(o, e, seed, step, knobs) - 1.0))
            rows.append((step, "train/seconds", 0.01 * (step + 1)))
    if last_step == STEPS:
        rows += _time_rows(o, e, seed, knobs, num_samples)
    return rows


def _cell(config: dict, status: str, reason: str | None, environment: dict,
          rows: list[tuple[int, str, float]]) -> CellResult:
    return CellResult(key=cell_key(config), config=config, status=status, reason=reason,
                      started=1000.0, finished=1001.0, environment=environment, metrics=rows)


def write_suite_json(run_dir: Path, name: str = "fabricated") -> None:
    # The data path is a URL on purpose: the HTML report must not contain it as a live URL.
    suite = {"name": name, "description": "A fabricated run for the reports tests",
             "seeds": list(SEEDS), "num_samples": [NUM_SAMPLES],
             "data": {"name": "digits", "path": "https://example.invalid/digits.npz"},
             "objectives": [{"name": o.name} for o in OBJECTIVES],
             "estimators": [{"name": e.name, "options": e.options} for e in ESTIMATORS]}
    (run_dir / "suite.json").write_text(json.dumps(suite, indent=2))


def fabricate_run(run_dir: Path, knobs: Knobs = DEFAULT_KNOBS,
                  sample_sizes: tuple[int, ...] = (NUM_SAMPLES,)) -> Path:
    """Write the fabricated run (see the module docstring) into ``run_dir``; return it."""
    with Store.open(run_dir) as store:
        run_id = store.start_run("fabricated", {"seeds": list(SEEDS)}, ENVIRONMENT)
        for o in OBJECTIVES:
            for e in ESTIMATORS:
                for s in sample_sizes:
                    for seed in SEEDS:
                        config = cell_config(o, e, seed, s)
                        if (o.name, e.label) == NOT_APPLICABLE:
                            cell = _cell(config, "not_applicable", NOT_APPLICABLE_REASON, {}, [])
                        elif ((o.name, e.label, seed) == FAILED
                              or (o.name, e.label) in knobs.failed_pairs):
                            rows = cell_rows(o, e, seed, knobs, FAILED_STEP, s)
                            cell = _cell(config, "failed", FAILED_REASON, ENVIRONMENT, rows)
                        else:
                            rows = cell_rows(o, e, seed, knobs, STEPS, s)
                            cell = _cell(config, "ok", None, ENVIRONMENT, rows)
                        store.write_cell(run_id, cell)
        store.finish_run(run_id)
    write_suite_json(run_dir)
    return run_dir


def fabricate_problem_run(run_dir: Path) -> Path:
    """A run whose cells all failed or were not applicable."""
    o, e = OBJECTIVES[1], ESTIMATORS[0]
    with Store.open(run_dir) as store:
        run_id = store.start_run("fabricated", {}, ENVIRONMENT)
        failed_rows = cell_rows(o, e, 0, DEFAULT_KNOBS, FAILED_STEP)
        store.write_cell(run_id, _cell(cell_config(o, e, 0), "failed", FAILED_REASON,
                                       ENVIRONMENT, failed_rows))
        na = cell_config(OBJECTIVES[0], ESTIMATORS[2], 0)
        store.write_cell(run_id, _cell(na, "not_applicable", NOT_APPLICABLE_REASON, {}, []))
        store.finish_run(run_id)
    write_suite_json(run_dir)
    return run_dir


def objective(name: str) -> Objective:
    return next(o for o in OBJECTIVES if o.name == name)


def estimator(label: str) -> Estimator:
    return next(e for e in ESTIMATORS if e.label == label)


# --------------------------------------------------------------------------------------------
# The fabricated store itself
# --------------------------------------------------------------------------------------------


def test_fabricated_run_has_the_promised_cells(tmp_path: Path) -> None:
    fabricate_run(tmp_path)
    with Store.open(tmp_path, create=False) as store:
        cells = store.cells()
    assert len(cells) == len(OBJECTIVES) * len(ESTIMATORS) * len(SEEDS)
    assert cells["status"].value_counts().to_dict() == {"ok": 14, "not_applicable": 3,
                                                        "failed": 1}
    assert (tmp_path / "suite.json").is_file()
