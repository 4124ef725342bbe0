"""Measure the speed ratios of the measurement engine and print them.

    python -m estibench.benchmarks.regression.speed.engine [--threads 1] [--repeats 5] [--quick]
    [--parts abcd]

On the digits-sized categorical VAE (input 64, hidden 200, 8 variables x 8 categories, a batch
of 32 random binary vectors):

(a) loop / vectorized: wall time of `gradient_stats(method="loop")` over
    `gradient_stats(method="vectorized")` for M = 256 replicas (target >= 5x);
(b) vectorized cost per estimate / floor: the vectorized wall time divided by M = 1024,
    over one bare forward + backward of the same networks with the same batch and S
    (`estibench.benchmarks.metrics.floor.bare_step`, timed by torch.utils.benchmark) (target <=
    1.5x);
(c) `throughput(...).overhead_ratio` (time per gradient estimate / the same floor) for every
    estimator family, at batch 32 and at batch 512 (target <= 1.1x);
(d) `gradient_stats(method="vectorized")` against its floor: a plain-torch
    `vmap(grad(loss))` of the same estimator's surrogate (`plain_loss`, the formulas of
    `handwritten.categorical_step`) on the same noise, followed by the same reduction
    (chunks flattened to float64, `StreamingMoments`), per estimator and wrt, REINFORCE with
    the sampled KL first (target <= 1.2x).

Every wall time is taken `--repeats` times, interleaved across the compared configurations so a
change in machine load hits both sides; the tables show medians and the ratio of medians, and
the best-of ratio (minimum times: the least disturbed runs) beside it. Nothing here is a
constant: every number printed is measured by this run.
"""

from __future__ import annotations

import argparse
import functools
import math
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


# (d) the vectorized statistics against their floor ---------------------------------------

FLOOR_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # label, estimator, options, S, kl: REINFORCE with the sampled KL first
    ("reinforce(loo), S=2, kl=sampled", "reinforce", {"baseline": "loo"}, 2, "sampled"),
    ("reinforce(loo), S=2", "reinforce", {"baseline": "loo"}, 2, "analytic"),
    ("reinforce, S=1", "reinforce", {}, 1, "analytic"),
    ("gumbel_softmax, S=1", "gumbel_softmax", {}, 1, "analytic"),
    ("st_gumbel, S=1", "st_gumbel", {}, 1, "analytic"),
]


def plain_loss(objective: objectives.Objective, estimator: str, samples: int, kl: str,
               x: torch.Tensor, wrt: str) -> Callable[..., torch.Tensor]:
    """loss(values, noise) -> scalar: the categorical VAE's surrogate for `estimator` written in
    plain torch (`handwritten.categorical_step`'s formulas, noise given), with `values`
    standing for the differentiated tensors: the logits (wrt="distribution") or the encoder's
    or decoder's parameters (through `torch.func.functional_call`), as the engine does."""
    from estibench.benchmarks.regression.speed.handwritten import bce, categorical_analytic_kl

    N, K = objective.variables, objective.categories  # type: ignore[attr-defined]
    log_k = math.log(K)
    names = [n for n in objective.parameter_groups().get(wrt, [])] if wrt != "distribution" \
        else []

    def surrogate(logits: torch.Tensor, decoder: Callable[[torch.Tensor], torch.Tensor],
                  noise: torch.Tensor) -> torch.Tensor:
        logp = logits - logits.logsumexp(-1, keepdim=True)
        perturbed = logp.detach() - torch.log(-torch.log(noise))
        if estimator == "gumbel_softmax":
            y = logp - torch.log(-torch.log(noise))
            z = (y - y.logsumexp(-1, keepdim=True)).exp()
        else:
            index = perturbed.argmax(-1, keepdim=True)
            z = torch.zeros_like(perturbed).scatter(-1, index, 1.0)
            if estimator == "st_gumbel":
                y = logp - torch.log(-torch.log(noise))
                soft = (y - y.logsumexp(-1, keepdim=True)).exp()
                z = z + (soft - soft.detach())
        f = bce(decoder(z.flatten(-2)), x)
        log_q = (z * logp).sum((-1, -2)) if estimator == "reinforce" else None
        if kl == "sampled":
            assert log_q is not None
            f = f - N * log_k - log_q.detach()
        if estimator == "reinforce":
            assert log_q is not None
            held = f.detach()
            signal = held - ((held.sum(0, keepdim=True) - held) / (samples - 1)
                             if samples > 1 else 0.0)
            f = f + signal * (log_q - log_q.detach())
        loss = f.mean(0)
        if kl == "analytic":
            loss = loss - categorical_analytic_kl(logp)
        return loss.sum()

    if wrt == "distribution":
        def loss(values: tuple[torch.Tensor, ...], noise: torch.Tensor) -> torch.Tensor:
            return surrogate(values[0], objective.decoder, noise)  # type: ignore[arg-type]
        return loss
    prefix = f"{wrt}."

    def network_loss(values: tuple[torch.Tensor, ...], noise: torch.Tensor) -> torch.Tensor:
        swapped = {n[len(prefix):]: v for n, v in zip(names, values, strict=True)}
        module = getattr(objective, wrt)

        def run(inputs: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(module, swapped, (inputs,))

        if wrt == "encoder":
            logits = run(x).unflatten(-1, (N, K))
            return surrogate(logits, objective.decoder, noise)  # type: ignore[arg-type]
        logits = objective.encoder(x).unflatten(-1, (N, K))  # type: ignore[misc]
        return surrogate(logits, run, noise)

    return network_loss


def floor_statistics(objective: objectives.Objective, loss: Callable[..., torch.Tensor],
                     values: tuple[torch.Tensor, ...], noise: torch.Tensor,
                     chunk_size: int) -> Callable[[], object]:
    """The floor of `gradient_stats`: `vmap(grad(loss))` over chunks of `chunk_size` replicas,
    each chunk flattened into one float64 buffer and reduced by the same `StreamingMoments`."""
    from estibench.benchmarks.metrics.streaming import StreamingMoments

    per_replica = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))
    width = sum(v.numel() for v in values)

    def run() -> object:
        moments = StreamingMoments()
        buffer = torch.empty((chunk_size, width), dtype=torch.float64)
        for block in noise.split(chunk_size):
            with torch.no_grad():
                grads = per_replica(values, block)
            n = block.shape[0]
            torch.cat([g.reshape(n, -1) for g in grads], 1, out=buffer[:n])
            moments.update(buffer[:n])
        return moments.variance()

    return run


def part_d(repeats: int, replicas: int, chunk_size: int = 64,
           wrts: tuple[str, ...] = WRT) -> list[dict[str, Any]]:
    """(d) gradient_stats (vectorized) against its floor, per estimator and wrt; returns the
    rows printed (ms of each, the ratio of medians and of minima)."""
    print(f"\n(d) vectorized gradient statistics / floor (a plain-torch vmap of the same "
          f"estimator, the same reduction), M = {replicas} (target <= 1.2x)")
    print(f"{'estimator, wrt':46s} {'stats ms':>9s} {'floor ms':>9s} {'median':>9s} "
          f"{'best':>9s}")
    rows = []
    x = binary_batch(32)
    for label, name, options, samples, kl in FLOOR_CASES:
        torch.manual_seed(0)
        objective = objectives.get("categorical_vae", input_dim=64, hidden=200, variables=8,
                                   categories=8, kl=kl)
        objective.eval()
        estimator = estimators.get(name, **options)
        noise = metrics.common_noise(objective, x, replicas, samples, seed=0)
        for wrt in wrts:
            if wrt == "distribution":
                with torch.no_grad():
                    values: tuple[torch.Tensor, ...] = (objective.posterior_params(x),)
            else:
                named = dict(objective.named_parameters())
                values = tuple(named[n].detach()
                               for n in objective.parameter_groups()[wrt])
            floor = floor_statistics(objective, plain_loss(objective, name, samples, kl, x, wrt),
                                     values, noise, chunk_size)
            stats = functools.partial(
                metrics.gradient_stats, objective, estimator, x, replicas=replicas,
                num_samples=samples, wrt=wrt, noise=noise, chunk_size=chunk_size, exact=False)
            t = wall_times({"stats": stats, "floor": floor}, repeats)
            print(ratio_row(f"{label}, {wrt}", t["stats"], t["floor"]), flush=True)
            rows.append({"estimator": label, "wrt": wrt,
                         "stats_ms": statistics.median(t["stats"]) * 1e3,
                         "floor_ms": statistics.median(t["floor"]) * 1e3,
                         "ratio": statistics.median(t["stats"]) / statistics.median(t["floor"]),
                         "best": min(t["stats"]) / min(t["floor"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: stable on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per measurement")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter timers")
    parser.add_argument("--parts", default="abcd", help="which parts to run (default abcd)")
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
    if "d" in args.parts:
        part_d(repeats, 256 if args.quick else 1024)


if __name__ == "__main__":
    main()
