"""Measure the speed ratios of the measurement engine (issue 3) and print them.

    python -m estibench.benchmarks.regression.speed.engine [--threads 1] [--repeats 5] [--quick]

On the digits-sized categorical VAE (input 64, hidden 200, 8 variables x 8 categories, a batch
of 32 random binary vectors):

(a) loop / vectorized: wall time of `gradient_stats(method="loop")` over
    `gradient_stats(method="vectorized")` for M = 256 replicas (target >= 5x);
(b) vectorized cost per estimate / floor: the vectorized wall time divided by M = 1024,
    over one bare forward + backward of the same networks with the same batch and S
    (`estibench.benchmarks.metrics.floor.bare_step`, timed by torch.utils.benchmark) (target <=
    1.5x);
(c) `throughput(...).overhead_ratio` (time per gradient estimate / the same floor) for every
    estimator family, at batch 32 and at batch 512 (target <= 1.1x).

Every wall time is taken `--repeats` times, interleaved across the compared configurations so a
change in machine load hits both sides; the tables show medians and the ratio of medians, and
the best-of ratio (minimum times: the least disturbed runs) beside it. Nothing here is a
constant: every number printed is measured by this run.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.benchmark import Timer

from estibench import estimators
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.metrics.floor import bare_step

ESTIMATORS: list[tuple[str, str, dict[str, Any], int]] = [
    ("reinforce(loo), S=2", "reinforce", {"baseline": "loo"}, 2),
    ("gumbel_softmax, S=1", "gumbel_softmax", {}, 1),
]
WRT = ("distribution", "encoder", "decoder")
FAMILIES: list[tuple[str, dict[str, Any], str, dict[str, Any], int]] = [
    ("categorical_vae", {}, "reinforce", {}, 1),
    ("categorical_vae", {}, "reinforce", {"baseline": "loo"}, 2),
    ("categorical_vae", {}, "gumbel_softmax", {}, 1),
    ("categorical_vae", {}, "st_gumbel", {}, 1),
    ("categorical_vae", {}, "straight_through", {}, 1),
    ("bernoulli_vae", {"latent_dim": 16, "hidden": 200}, "reinforce", {"baseline": "loo"}, 2),
    ("bernoulli_vae", {"latent_dim": 16, "hidden": 200}, "st_gumbel", {}, 1),
    ("gaussian_vae", {}, "pathwise", {}, 1),
    ("conditional_vae", {}, "pathwise", {}, 1),
    ("linear_gaussian", {}, "pathwise", {}, 1),
]


def digits_vae() -> objectives.Objective:
    torch.manual_seed(0)
    return objectives.get("categorical_vae", input_dim=64, hidden=200, variables=8,
                          categories=8)


def binary_batch(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 64, generator=g) < 0.5).float()


def wall_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, `repeats` rounds, interleaved; one warm-up each."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def floor_time(objective: objectives.Objective, x: torch.Tensor, samples: int) -> float:
    """Median seconds of one bare forward + backward (gradients cleared each time)."""
    step = bare_step(objective, x, samples)

    def run() -> None:
        objective.zero_grad(set_to_none=True)
        step()

    for _ in range(3):
        run()
    timer = Timer("run()", globals={"run": run}, num_threads=torch.get_num_threads())
    median = timer.blocked_autorange(min_run_time=0.5).median
    objective.zero_grad(set_to_none=True)
    return float(median)


def ratio_row(label: str, slow: list[float], fast: list[float]) -> str:
    median = statistics.median(slow) / statistics.median(fast)
    best = min(slow) / min(fast)
    return (f"{label:42s} {statistics.median(slow) * 1e3:9.1f} {statistics.median(fast) * 1e3:9.1f}"
            f" {median:8.2f}x {best:8.2f}x")


def part_a(repeats: int, replicas: int) -> None:
    print(f"\n(a) loop / vectorized wall time, M = {replicas} (target >= 5x)")
    print(f"{'estimator, wrt':42s} {'loop ms':>9s} {'vec ms':>9s} {'median':>9s} {'best':>9s}")
    objective, x = digits_vae(), binary_batch(32)
    for label, name, options, samples in ESTIMATORS:
        estimator = estimators.get(name, **options)
        for wrt in WRT:
            calls = {
                method: functools.partial(
                    metrics.gradient_stats, objective, estimator, x, replicas=replicas,
                    num_samples=samples, wrt=wrt, method=method, seed=0)
                for method in ("loop", "vectorized")
            }
            t = wall_times(calls, repeats)
            print(ratio_row(f"{label}, {wrt}", t["loop"], t["vectorized"]))


def part_b(repeats: int, replicas: int) -> None:
    print(f"\n(b) vectorized time per estimate (M = {replicas}) / bare forward + backward "
          f"(target <= 1.5x)")
    print(f"{'estimator, wrt':42s} {'ms/est':>9s} {'floor ms':>9s} {'median':>9s} {'best':>9s}")
    objective, x = digits_vae(), binary_batch(32)
    for label, name, options, samples in ESTIMATORS:
        estimator = estimators.get(name, **options)
        floor = floor_time(objective, x, samples)
        for wrt in WRT:
            call = functools.partial(
                metrics.gradient_stats, objective, estimator, x, replicas=replicas,
                num_samples=samples, wrt=wrt, seed=0)
            t = wall_times({"vectorized": call}, repeats)["vectorized"]
            per = [s / replicas for s in t]
            print(f"{label + ', ' + wrt:42s} {statistics.median(per) * 1e3:9.3f} "
                  f"{floor * 1e3:9.3f} {statistics.median(per) / floor:8.2f}x "
                  f"{min(per) / floor:8.2f}x")


def part_c(min_run_time: float, batches: tuple[int, ...], repeats: int) -> None:
    print("\n(c) throughput overhead_ratio = time per gradient estimate / bare forward + "
          "backward (target <= 1.1x); each cell: ms per estimate, ratio of medians over "
          f"{repeats} throughput runs, ratio of minima")
    header = "".join(f" {'B=' + str(b) + ' ms':>10s} {'median':>7s} {'best':>7s}" for b in batches)
    print(f"{'objective / estimator':46s}{header}")
    for objective_name, objective_options, name, options, samples in FAMILIES:
        torch.manual_seed(0)
        objective = objectives.get(objective_name, **objective_options)
        estimator = estimators.get(name, **options)
        cells = []
        for batch in batches:
            g = torch.Generator().manual_seed(0)
            dim = objective.example_input().shape[-1]
            x = (torch.rand(batch, dim, generator=g) < 0.5).float()
            if objective_name == "linear_gaussian":  # real-valued data
                x = torch.randn(batch, dim, generator=g)
            runs = [
                metrics.throughput(objective, estimator, x, num_samples=samples,
                                   min_run_time=min_run_time, memory=False)
                for _ in range(repeats)
            ]
            estimate = [r.time_per_estimate for r in runs]
            floor = [r.floor_time for r in runs]
            cells.append(
                f" {statistics.median(estimate) * 1e3:10.3f}"
                f" {statistics.median(estimate) / statistics.median(floor):6.2f}x"
                f" {min(estimate) / min(floor):6.2f}x"
            )
        label = f"{objective_name} / {name}{options or ''}, S={samples}"
        print(f"{label:46s}{''.join(cells)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter timers")
    parser.add_argument("--parts", default="abc", help="which parts to run (default abc)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    env = metrics.environment()
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    print(f"device: {env['device']} | torch {env['torch']} | threads {torch.get_num_threads()}"
          f" | commit {str(env['commit'])[:10]}{' (dirty)' if env['dirty'] else ''}"
          f" | load average {load} (on {os.cpu_count()} cores)")
    if "a" in args.parts:
        part_a(repeats, 256)
    if "b" in args.parts:
        part_b(repeats, 1024)
    if "c" in args.parts:
        part_c(0.1 if args.quick else 0.3, (32, 512), repeats if args.quick else 3)


if __name__ == "__main__":
    main()
