"""Where a `handwritten` case's overhead goes: what each side runs in one step, by count.

    python -m estibench.benchmarks.regression.speed.step_profile [--only LABEL] [--batch 32]
    [--rounding]

For each case of `estibench.benchmarks.regression.speed.handwritten`, estibench's step and the
plain-torch step:
- operations: the top-level events `torch.profiler` records in one step (aten operations and
  the autograd engine's nodes); equal counts mean the two sides run the same kernels;
- Python calls: the calls cProfile records per step (Python functions and builtins, a step's
  own call excluded), the mean over `--calls` steps.
With `--rounding`: the float32 rounding of estibench's gradient, its float32 step against the
same step in float64 (same parameters, same explicit noise): the largest absolute difference
over the parameters, and the largest gradient entry it is measured against.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats

import torch
from torch.profiler import ProfilerActivity, profile

from estibench import estimators
from estibench.benchmarks.regression.speed.handwritten import CASES, Case, Step


def operations(objective, step: Step, warmup: int = 3) -> int:
    """Top-level profiler events in one call of `step` (gradients cleared first)."""
    for _ in range(warmup):
        objective.zero_grad(set_to_none=True)
        step()
    objective.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(1 for event in prof.events() if event.cpu_parent is None)


def python_calls(objective, step: Step, calls: int = 100) -> float:
    """cProfile's calls per call of `step`: Python functions and builtins, the step excluded."""
    step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        step()
    profiler.disable()
    objective.zero_grad(set_to_none=True)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[1] for (_, _, name), entry in stats.items()
                if name != "step" and "disable" not in name)  # the profiler's own switch-off
    return total / calls


def float32_rounding(case: Case, batch: int = 5, seed: int = 1) -> tuple[float, float, str]:
    """(largest |float32 - float64| over the parameters' gradients, the largest |gradient|
    entry, the parameter where the difference is largest) for estibench's step of `case`."""
    objective, _, _ = case.build(batch)

    def estimator_of(model):  # an estimator with parameters lives on the objective (`build`)
        if "estimator" in model._modules:
            return model.estimator
        return estimators.get(case.estimator, **case.estimator_options)

    x = (torch.rand(batch, 64, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    shape = estimator_of(objective).noise_shape(objective.posterior(x), case.samples)
    noise = torch.rand(shape, generator=torch.Generator().manual_seed(seed)).clamp(1e-6, 1 - 1e-6)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        model = copy.deepcopy(objective).to(dtype)
        est = estimator_of(model)
        out = model.estimate(x.to(dtype), est, case.samples, noise=noise.to(dtype))
        loss = -out.loss.sum()
        (loss if out.aux_loss is None else loss + out.aux_loss.sum()).backward()
        grads[dtype] = {n: p.grad.double() for n, p in model.named_parameters()
                        if p.grad is not None}
    differences = {n: float((grads[torch.float32][n] - g).abs().max())
                   for n, g in grads[torch.float64].items()}
    worst = max(differences, key=differences.__getitem__)
    largest = max(float(g.abs().max()) for g in grads[torch.float64].values())
    return differences[worst], largest, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="the cases whose label contains this")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=100, help="steps profiled by cProfile")
    parser.add_argument("--rounding", action="store_true",
                        help="also the float32 rounding of estibench's gradient (batch 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"batch {args.batch}; per step: profiler top-level events, cProfile calls")
    print(f"{'objective / estimator':52s} {'ops':>5s} {'plain':>5s} {'calls':>6s} "
          f"{'plain':>6s}" + ("   f32 err   |grad| max  where" if args.rounding else ""))
    for case in CASES:
        if args.only not in case.label:
            continue
        objective, ours, plain = case.build(args.batch)
        row = (f"{case.label:52s} {operations(objective, ours):5d} "
               f"{operations(objective, plain):5d} "
               f"{python_calls(objective, ours, args.calls):6.0f} "
               f"{python_calls(objective, plain, args.calls):6.0f}")
        if args.rounding:
            error, largest, where = float32_rounding(case)
            row += f"  {error:9.2e}  {largest:9.3g}  {where}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
