"""Overhead per evaluation of f, relative to REINFORCE, for the estimators named.

    python -m estibench.benchmarks.regression.speed.per_evaluation [--estimators nvil muprop rebar
    relax]
        [--objective categorical_vae | categorical_vae_1x16 | bernoulli_vae] [--samples 2]
        [--repeats 5]

For each estimator: `throughput(...)` on the digits-sized objective (batch 32 random binary
vectors, one torch thread), overhead = time per gradient estimate - the floor (a bare forward
+ backward, `estibench.benchmarks.metrics.floor`; one computation, so the median over every call is
used), divided by the estimator's evaluations of f per
example (`EstimatorOutput.evaluations`), and that over REINFORCE's (S evaluations). Time per
estimate is the harness's: forward, estimator, backward of the loss and of aux_loss (training
mode: REBAR's and RELAX's double backward included). Runs are interleaved across estimators
`--repeats` times so that a change of load hits all; medians are shown, with /proc/loadavg
before and after.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from estibench import estimators
from estibench.benchmarks import metrics, objectives

# label: (objective, options); one categorical variable of 16 values for the unordered set
OBJECTIVES = {
    "categorical_vae": ("categorical_vae",
                        {"input_dim": 64, "variables": 4, "categories": 4, "hidden": 200}),
    "categorical_vae_1x16": ("categorical_vae",
                             {"input_dim": 64, "variables": 1, "categories": 16, "hidden": 200}),
    "bernoulli_vae": ("bernoulli_vae", {"input_dim": 64, "latent_dim": 8, "hidden": []}),
}


def load() -> str:
    path = Path("/proc/loadavg")
    return path.read_text().split(" ", 3)[:3].__str__() if path.exists() else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", nargs="+", default=["nvil", "muprop", "rebar", "relax"])
    parser.add_argument("--objective", choices=list(OBJECTIVES), default="categorical_vae")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    name, options = OBJECTIVES[args.objective]
    objective = objectives.get(name, **options)
    x = (torch.rand(32, 64, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    names = ["reinforce", *[n for n in args.estimators if n != "reinforce"]]
    built = {n: estimators.get(n) for n in names}
    for name in list(names):  # an estimator that does not apply is named and left out
        try:
            objective.check(built[name])
        except estimators.EstimatorError as error:
            print(f"{name}: not applicable to {args.objective} ({error}); left out")
            names.remove(name)
            del built[name]
    evaluations = {n: objective.estimate(x, e, args.samples).evaluations for n, e in built.items()}
    times: dict[str, list[float]] = {n: [] for n in names}
    floors: dict[str, list[float]] = {n: [] for n in names}
    print(f"load before: {load()}")
    for _ in range(args.repeats):
        for name, estimator in built.items():
            result = metrics.throughput(objective, estimator, x, num_samples=args.samples,
                                        min_run_time=args.min_run_time, memory=False)
            times[name].append(result.time_per_estimate)
            floors[name].append(result.floor_time)
    print(f"load after: {load()}")
    floor = statistics.median([t for ts in floors.values() for t in ts])
    per_eval = {n: (statistics.median(times[n]) - floor) / evaluations[n] for n in names}
    print(f"{args.objective}, S = {args.samples}, batch 32, 1 thread, {args.repeats} repeats")
    print(f"floor (bare forward + backward): {1e3 * floor:.3f} ms")
    print(f"{'estimator':12s} {'evals':>5s} {'estimate ms':>11s} {'overhead/eval ms':>16s} "
          f"{'vs reinforce':>12s}")
    for name in names:
        print(f"{name:12s} {evaluations[name]:5d} {1e3 * statistics.median(times[name]):11.3f} "
              f"{1e3 * per_eval[name]:16.3f} {per_eval[name] / per_eval['reinforce']:12.2f}")


if __name__ == "__main__":
    main()
