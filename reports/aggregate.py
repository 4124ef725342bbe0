"""Read run directories into tidy pandas frames and aggregate them over seeds.

    frame = reports.load("runs/standard-20250101-120000")   # one row per (cell, step, metric)
    table = reports.summary_table(frame)                      # mean and standard error over seeds
    trouble = reports.problems("runs/standard-20250101-120000")

Only cells with status "ok" enter aggregates; failed cells keep partial curves in the store, but
averaging them with finished cells would mix different training lengths.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from estibench.benchmarks.results.labels import UNKNOWN as _UNKNOWN
from estibench.benchmarks.results.labels import (
    display_estimators,
    display_objective,
    printable,
)
from estibench.benchmarks.results.store import CELL_CONFIG_KEYS, STORE_FILENAME, Store, StoreError
from estibench.reports.errors import ReportError

RunDirs = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

SUITE_FILENAME = "suite.json"
# Config keys copied into columns; anything else stays in the store.
CONFIG_COLUMNS: tuple[str, ...] = (
    "suite",
    "protocol",
    "objective",
    "objective_name",
    "kl",
    "bound",
    "estimator",
    "estimator_name",
    "trained_with",
    "seed",
    "num_samples",
)
# objective and estimator are the labels people read (`labels`); stored_objective and
# stored_estimator the cells' own, which identify them (compare matches runs by them)
CELL_COLUMNS: tuple[str, ...] = ("run", "cell_id", "key", "status", *CONFIG_COLUMNS, "device",
                                 "bias_against", "stored_objective", "stored_estimator")
FRAME_COLUMNS: tuple[str, ...] = (*CELL_COLUMNS, "step", "metric", "value")
IWAE_PATTERN = re.compile(r"^test/iwae_(\d+)$")


@dataclass(frozen=True)
class Quantity:
    """One column pair (mean, standard error) of the summary table."""

    key: str  # column stem: `{key}_mean`, `{key}_se`
    metric: str  # metric name in the store; its value at the cell's last step is used
    label: str  # human label, with the unit
    group: str  # "bounds" | "gradients" | "cost": which display table it goes to
    scale: float = 1.0  # display unit conversion (s -> ms, bytes -> MiB)
    spread: str = "se"  # "se": `{key}_se` over seeds; "range": `{key}_min` and `{key}_max`
    flag: str | None = None  # a 0/1 metric; `{key}_unmet` counts the cells where it is 0
    # a column of `at_noise_floor`; `{key}_floor` counts the cells where the value is within
    # the Monte Carlo noise of the mean (the tables mark it)
    floor: str | None = None
    timed: bool = False  # a time: `{key}_busy` counts the cells timed on a busy machine


_BOUNDS_BEFORE_IWAE = (Quantity("elbo", "test/elbo", "test ELBO (nats)", "bounds"),)
_BOUNDS_AFTER_IWAE = (
    Quantity("log_marginal", "test/log_marginal", "log p(x), exact or reference (nats)",
             "bounds"),
    Quantity("gap", "test/gap", "gap log p(x) - ELBO (nats)", "bounds"),
    Quantity("exact_objective", "test/exact_objective", "exact objective", "bounds"),
)
_GRADIENT_AND_COST = (
    Quantity("replicas_distribution", "grad/distribution/replicas", "M (distribution)",
             "gradients", spread="range"),
    Quantity("log10_var_distribution", "grad/distribution/log10_total_variance",
             "log10 Var (distribution)", "gradients",
             flag="grad/distribution/precision_met"),
    Quantity("replicas_encoder", "grad/encoder/replicas", "M (encoder)", "gradients",
             spread="range"),
    Quantity("log10_var_encoder", "grad/encoder/log10_total_variance",
             "log10 Var (encoder)", "gradients", flag="grad/encoder/precision_met"),
    Quantity("snr_distribution", "grad/distribution/snr_norm", "SNR (distribution)", "gradients",
             floor="snr_at_floor"),
    Quantity("cosine_distribution", "grad/distribution/cosine",
             "cosine of the mean of M to exact (distribution)", "gradients",
             floor="cosine_at_floor"),
    Quantity("time_per_estimate_ms", "time/time_per_estimate", "time / estimate (ms)", "cost",
             1e3, timed=True),
    Quantity("variance_x_time", "efficiency/variance_x_time", "Var x time (Var·s)", "cost",
             timed=True),
    Quantity("evaluations", "estimator/evaluations", "f evaluations / estimate", "cost"),
    Quantity("variance_x_evaluations", "efficiency/variance_x_evaluations",
             "Var x evaluations", "cost"),
    Quantity("peak_memory_mib", "time/peak_memory_bytes", "peak memory (MiB)", "cost",
             1.0 / 2**20),
    Quantity("load_1min", "time/load_1min", "machine load while timed (1 min)", "cost"),
)


def quantity_by_key(key: str) -> Quantity | None:
    """The :class:`Quantity` whose column stem is ``key`` (``iwae_{k}`` for any k)."""
    if m := re.fullmatch(r"iwae_(\d+)", key):
        k = int(m.group(1))
        return Quantity(key, f"test/iwae_{k}", f"test IWAE-{k} (nats)", "bounds")
    fixed = (*_BOUNDS_BEFORE_IWAE, *_BOUNDS_AFTER_IWAE, *_GRADIENT_AND_COST)
    return next((q for q in fixed if q.key == key), None)


def summary_quantities(metrics: Iterable[str]) -> list[Quantity]:
    """The summary quantities whose metric occurs in ``metrics``, IWAE-k sorted by k."""
    present = set(metrics)
    ks = sorted(int(m.group(1)) for name in present if (m := IWAE_PATTERN.match(name)))
    iwae = tuple(q for k in ks if (q := quantity_by_key(f"iwae_{k}")) is not None)
    every = (*_BOUNDS_BEFORE_IWAE, *iwae, *_BOUNDS_AFTER_IWAE, *_GRADIENT_AND_COST)
    return [q for q in every if q.metric in present]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def run_dirs(run_dir_or_dirs: RunDirs) -> list[Path]:
    """One path or several -> a list of run directories (each must hold a results store)."""
    if isinstance(run_dir_or_dirs, (str, os.PathLike)):
        dirs = [Path(run_dir_or_dirs)]
    else:
        dirs = [Path(d) for d in run_dir_or_dirs]
    if not dirs:
        raise ReportError("no run directory given")
    for path in dirs:
        if not (path / STORE_FILENAME).is_file():
            raise ReportError(
                f"{str(path)!r} is not a run directory: it has no {STORE_FILENAME} "
                "(make one with `estibench run`)"
            )
    return dirs


def _run_labels(dirs: Sequence[Path]) -> list[str]:
    """Directory names, or full paths when two runs share a name."""
    names = [d.name or str(d) for d in dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in dirs]


def _read_store(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    try:
        with Store.open(run_dir, create=False) as store:
            return store.cells(CELL_CONFIG_KEYS), store.metrics(), store.runs()
    except StoreError as err:
        raise ReportError(f"cannot read {str(run_dir)!r}: {err}") from err


def bias_against(config: dict[str, Any]) -> str:
    """What a cell's bias is measured against: "exact", or the reference gradient's estimator
    and S ("reference: reinforce(baseline=loo), S = 8"; its M is a metric)."""
    reference = (config.get("metrics") or {}).get("reference")
    if not isinstance(reference, dict):
        return "exact"
    options = reference.get("options") or {}
    name = str(reference.get("estimator"))
    if options:
        name += "(" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"
    # the IWAE-K bound's reference keeps the cell's K
    samples = (config.get("num_samples") if config.get("bound") == "iwae"
               else reference.get("num_samples"))
    return f"reference: {name}, S = {samples}"


def _explicit_labels(run_dir: Path) -> frozenset[str]:
    """The objective and estimator labels the run's suite set itself (kept as they are in
    reports)."""
    suite = load_suite_config(run_dir) or {}
    return frozenset(str(o["label"]) for kind in ("objectives", "estimators")
                     for o in suite.get(kind, []) if isinstance(o, dict) and o.get("label"))


def _cell_frame(cells: pd.DataFrame, run: str, explicit: frozenset[str] = frozenset(),
                estimators: dict[str, str] | None = None) -> pd.DataFrame:
    """Store cells -> one row per cell with the config columns, device, reason and dicts.
    `estimators`: stored label -> display label, over every run shown together (default:
    this run's own, `display_estimators`)."""
    records = []
    if estimators is None:
        estimators = display_estimators(cells["config"], explicit)
    for row in cells.itertuples(index=False):
        config: dict[str, Any] = row.config
        environment: dict[str, Any] = row.environment
        record = {
            "run": run,
            "cell_id": int(row.id),
            "key": row.key,
            "status": row.status,
            **{name: config.get(name) for name in CONFIG_COLUMNS},
            # figures and tables sort and group by these labels: never leave them empty
            # without control characters: figures draw them as missing glyphs (and warn)
            "objective": printable(display_objective(config, explicit)),
            "estimator": printable(estimators.get(str(config.get("estimator")),
                                                  config.get("estimator") or _UNKNOWN)),
            "device": environment.get("device"),
            "stored_objective": config.get("objective") or _UNKNOWN,
            "stored_estimator": config.get("estimator") or _UNKNOWN,
            "bias_against": bias_against(config),
            "reason": row.reason,
            "environment": environment,
            "config": config,
        }
        records.append(record)
    columns = [*CELL_COLUMNS, "reason", "environment", "config"]
    return pd.DataFrame.from_records(records, columns=columns)


def load_cells(run_dir_or_dirs: RunDirs) -> pd.DataFrame:
    """One row per cell: ``run, cell_id, key, status``, config columns, ``device, reason,
    environment, config`` (the environment dict, empty for not-applicable cells; the full
    config dict)."""
    dirs = run_dirs(run_dir_or_dirs)
    stores = [_read_store(d) for d in dirs]
    shown = _estimator_labels(dirs, [cells for cells, _, _ in stores])
    frames = [
        _cell_frame(cells, run, _explicit_labels(d), shown)
        for d, run, (cells, _, _) in zip(dirs, _run_labels(dirs), stores, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)


def _estimator_labels(dirs: Sequence[Path], cells: Sequence[pd.DataFrame]) -> dict[str, str]:
    """Stored estimator label -> display label over all the runs shown together, so that one
    estimator has one label in every run (`display_estimators`)."""
    explicit = frozenset().union(*(_explicit_labels(d) for d in dirs))
    return display_estimators([c for frame in cells for c in frame["config"]], explicit)


def load(run_dir_or_dirs: RunDirs) -> pd.DataFrame:
    """The tidy frame of one run or several: one row per (cell, step, metric).

    Columns: ``run`` (the directory name), ``cell_id, key, status``, the config columns
    (``objective, estimator, estimator_name, seed, num_samples, kl, protocol, trained_with``...),
    ``device`` (from the cell's environment) and ``step, metric, value``. Cells without metric
    rows (not applicable) have no rows here; see :func:`load_cells`.
    """
    dirs = run_dirs(run_dir_or_dirs)
    stores = [_read_store(d) for d in dirs]
    shown = _estimator_labels(dirs, [cells for cells, _, _ in stores])
    frames = []
    for d, run, (cells, metrics, _) in zip(dirs, _run_labels(dirs), stores, strict=True):
        info = _cell_frame(cells, run, _explicit_labels(d), shown)[list(CELL_COLUMNS)]
        rows = metrics[["cell_id", "step", "metric", "value"]]
        frames.append(info.merge(rows, on="cell_id", how="inner", validate="one_to_many"))
    frame = pd.concat(frames, ignore_index=True)
    return frame[list(FRAME_COLUMNS)]


def load_suite_config(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's ``suite.json`` as a dict; None if it is missing or not valid JSON."""
    path = Path(run_dir) / SUITE_FILENAME
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def planned_cells(suite: dict[str, Any] | None) -> int | None:
    """How many cells the stored suite plans: objectives x (each estimator's numbers of
    samples) x seeds, as the harness expands it; None without a readable suite."""
    try:
        seeds, objectives = len(suite["seeds"]), len(suite["objectives"])  # type: ignore[index]
        sizes = sum(len(e.get("num_samples") or suite["num_samples"])  # type: ignore[index]
                    for e in suite["estimators"])  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return objectives * sizes * seeds


def missing_cells(suite: dict[str, Any] | None, cells: pd.DataFrame) -> int:
    """Cells the suite plans that the store does not hold: never run (an interrupted run)."""
    planned = planned_cells(suite)
    return 0 if planned is None else max(planned - int(cells["key"].nunique()), 0)


def load_runs(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The run's invocation history (``Store.runs()``)."""
    return _read_store(run_dirs(run_dir)[0])[2]


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def completed(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of ok cells with a value (NaN is how the store reads back a NULL)."""
    return frame[(frame["status"] == "ok") & frame["value"].notna()]


def final_values(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per ok cell: cell columns and, per metric, its value at the cell's last step
    where that metric was recorded (the final checkpoint for gradient and test metrics)."""
    rows = completed(frame)
    if rows.empty:
        return pd.DataFrame(columns=list(CELL_COLUMNS))
    # A stable sort keeps the store's order within a step; `last` then takes the final step.
    ordered = rows.sort_values("step", kind="stable")
    last = ordered.groupby(["run", "cell_id", "metric"], sort=False)["value"].last()
    wide = last.unstack("metric")
    wide.columns.name = None
    info = rows.drop_duplicates(["run", "cell_id"]).set_index(["run", "cell_id"])
    info = info[[c for c in CELL_COLUMNS if c not in ("run", "cell_id")]]
    return info.join(wide).reset_index()


def mean_se(values: pd.Series, by: list[pd.Series] | list[str] | pd.Series) -> pd.DataFrame:
    """Mean, standard error of the mean (sample sd / sqrt(n), NaN for n < 2) and n per group.

    NaN values are left out of every group statistic.
    """
    grouped = values.groupby(by, sort=True, dropna=False)
    out = grouped.agg(["mean", "std", "count"])
    out["se"] = out["std"] / np.sqrt(out["count"])
    return out.rename(columns={"count": "n"})[["mean", "se", "n"]]


def group_keys(frame: pd.DataFrame, by_num_samples: bool | None = None) -> list[str]:
    """``[run,] objective, estimator[, num_samples]``: run when the frame mixes several runs,
    num_samples when asked or (by default) when the frame's cells use more than one."""
    keys = ["objective", "estimator"]
    if frame["run"].nunique() > 1:
        keys.insert(0, "run")
    if by_num_samples is None:
        by_num_samples = frame["num_samples"].nunique() > 1
    if by_num_samples:
        keys.append("num_samples")
    return keys


def summary_table(frame: pd.DataFrame, by_num_samples: bool | None = None) -> pd.DataFrame:
    """Per (objective, estimator[, num_samples]): mean and standard error over seeds.

    Columns: the group keys, ``seeds`` (number of ok cells), then ``{key}_mean`` and
    ``{key}_se`` for every :class:`Quantity` whose metric occurs (final values; times in ms,
    memory in MiB). Empty (with the key columns) when no cell completed.
    """
    finals = final_values(frame)
    if finals.empty:
        return pd.DataFrame(columns=["objective", "estimator", "seeds"])
    keys = group_keys(frame, by_num_samples)
    groups = [finals[k] for k in keys]
    table = finals.groupby(groups, sort=True, dropna=False).size().rename("seeds").to_frame()
    for quantity in summary_quantities(finals.columns):
        values = finals[quantity.metric] * quantity.scale
        stats = mean_se(values, groups)
        table[f"{quantity.key}_mean"] = stats["mean"]
        if quantity.spread == "range":
            grouped = values.groupby(groups, sort=True, dropna=False)
            table[f"{quantity.key}_min"] = grouped.min()
            table[f"{quantity.key}_max"] = grouped.max()
        else:
            table[f"{quantity.key}_se"] = stats["se"]
        if quantity.floor is not None:
            floors = at_noise_floor(finals)
            if quantity.floor in floors.columns:
                table[f"{quantity.key}_floor"] = floors[quantity.floor].groupby(
                    groups, sort=True, dropna=False).sum()
        if quantity.timed and "time/busy" in finals.columns:
            table[f"{quantity.key}_busy"] = (finals["time/busy"] == 1).groupby(
                groups, sort=True, dropna=False).sum()
        if quantity.flag is not None and quantity.flag in finals.columns:
            unmet = (finals[quantity.flag] == 0).groupby(groups, sort=True, dropna=False).sum()
            table[f"{quantity.key}_unmet"] = unmet
    return table.reset_index()


FLOOR_Z = 2.0  # a value within this many standard errors of its noise-only value


def at_noise_floor(finals: pd.DataFrame, wrt: str = "distribution") -> pd.DataFrame:
    """Per cell, whether SNR and cosine are within the Monte Carlo noise of the mean of M:

    - snr_at_floor: ||mean||^2 <= FLOOR_Z^2 tr(Var) / M, i.e. SNR^2 <= FLOOR_Z^2 / M: the mean
      is not told from zero (an unbiased estimator of a zero gradient has SNR about
      1/sqrt(M), which is noise, not signal);
    - cosine_at_floor: ||exact||^2 <= FLOOR_Z^2 tr(Var) / M: the exact gradient is smaller
      than the mean's noise, so the cosine's sign and size are noise.
    Columns absent where the metrics are."""
    out = pd.DataFrame(index=finals.index)
    replicas = finals.get(f"grad/{wrt}/replicas")
    if replicas is None:
        return out
    snr = finals.get(f"grad/{wrt}/snr_norm")
    if snr is not None:
        out["snr_at_floor"] = (snr**2 <= FLOOR_Z**2 / replicas) & snr.notna()
    bias, relative = finals.get(f"grad/{wrt}/bias_norm"), finals.get(f"grad/{wrt}/relative_bias")
    variance = finals.get(f"grad/{wrt}/total_variance")
    if bias is not None and relative is not None and variance is not None:
        exact = (bias / relative).where(relative > 0)
        out["cosine_at_floor"] = (exact**2 <= FLOOR_Z**2 * variance / replicas) & exact.notna()
    return out


def _joined(values: pd.Series) -> str:
    """Sorted distinct values as text: ``"0, 1, 2"``."""
    return ", ".join(str(v) for v in sorted(set(values.dropna())))


def problems_of(cells: pd.DataFrame) -> pd.DataFrame:
    """Failed and not-applicable cells, one row per (status, pair, reason) and set of seeds.

    Seeds of one (pair, S, reason) are collapsed first, then the sizes S that share the same
    seeds, so a listed row never claims a (S, seed) combination that did not occur. Columns:
    ``status, objective, estimator, num_samples, seeds, reason`` (the last three as text);
    failed rows first.
    """
    columns = ["status", "objective", "estimator", "num_samples", "seeds", "reason"]
    bad = cells[cells["status"] != "ok"].copy()
    if bad.empty:
        return pd.DataFrame(columns=columns)
    bad["reason"] = bad["reason"].fillna("(no reason recorded)")
    pair = ["status", "objective", "estimator", "reason"]
    by_size = bad.groupby([*pair, "num_samples"], sort=False, dropna=False)["seed"].agg(_joined)
    by_size = by_size.rename("seeds").reset_index()
    out = by_size.groupby([*pair, "seeds"], sort=False, dropna=False)["num_samples"].agg(_joined)
    out = out.reset_index()
    # failed before not_applicable: a failure needs attention, an inapplicable pair does not.
    out["_order"] = (out["status"] != "failed").astype(int)
    out = out.sort_values(["_order", "objective", "estimator"], kind="stable")
    return out[columns].reset_index(drop=True)


def problems(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Failed and not-applicable cells of a run with their reasons (see :func:`problems_of`)."""
    return problems_of(load_cells(run_dir))
