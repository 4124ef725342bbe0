"""torch.compile against eager: one estimator of each family, at batch 32 and 512.

    python -m estibench.benchmarks.regression.speed --compile [--batches 32,512]
        [--min-run-time 0.2] [--backend inductor] [--only LABEL]

For each case: `metrics.throughput` eager, compiled (`compile=True`: the estimate's forward
through `torch.compile`, AOTAutograd compiling its backward; compiled once in the warm-up,
timed apart as the compile seconds), and eager again; the ratio is the compiled time per
estimate over the mean of the two eager ones (below 1: compiling pays), so a drift of the
machine's load over the three runs is split evenly. Compiling takes seconds to a minute per
case and batch size on a CPU: run it once, with a short `--min-run-time`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from estibench import estimators
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.regression.speed.handwritten import CASES, Case
from estibench.benchmarks.regression.speed.timing import device_of, load

FAMILIES = (  # one estimator of each family (the estimators' modules)
    "categorical 8x8 / reinforce(loo), S=4",   # score function
    "categorical 8x8 / gumbel_softmax",         # relaxed
    "categorical 8x8 / st_gumbel",              # straight-through
    "categorical 8x8 / reinmax",                # modern straight-through
    "gaussian 16 / pathwise",                   # pathwise
    "bernoulli 16 / disarm, 1 pair",            # antithetic
    "bernoulli 16 / vimco, K=4 (iwae)",         # multi-sample
    "categorical 2x4 / indecater, S=1",         # partial enumeration
    "categorical 8x8 / muprop, S=1",            # control variates
    "gaussian 4 / measure_valued, S=1",         # measure-valued
)


@dataclass(frozen=True)
class CompiledRow:
    label: str
    batch: int
    eager_ms: float
    compiled_ms: float
    compile_seconds: float
    error: str = ""

    @property
    def ratio(self) -> float:
        return self.compiled_ms / self.eager_ms


def cases(only: str = "") -> list[Case]:
    by_label = {c.label: c for c in CASES}
    return [by_label[label] for label in FAMILIES if only in label]


def measure(case: Case, batch: int, min_run_time: float, backend: str = "inductor",
            device: str = "cpu") -> CompiledRow:
    torch.manual_seed(0)
    objective = objectives.get(case.objective, input_dim=64, hidden=200, kl=case.kl,
                               **case.objective_options)
    estimator = estimators.get(case.estimator, **case.estimator_options)

    def timed(compile: bool | str) -> metrics.ThroughputResult:
        return metrics.throughput(objective, estimator, batch_size=batch,
                                  num_samples=case.samples, device=device,
                                  min_run_time=min_run_time, memory=False, compile=compile)

    validating = Distribution._validate_args  # dynamo's first compile switches it off for good
    try:
        before = timed(False)
        # Every case compiles the same code (throughput's surrogate): past dynamo's recompile
        # limit it would run eager under its guards. A reset compiles each case afresh.
        torch._dynamo.reset()
        compiled = timed(backend)
        after = timed(False)
    except Exception as error:  # what dynamo or inductor refuses: named in the table
        return CompiledRow(case.label, batch, float("nan"), float("nan"), float("nan"),
                           f"{type(error).__name__}: {str(error).splitlines()[0][:80]}")
    finally:
        Distribution.set_default_validate_args(validating)
    eager = (before.time_per_estimate + after.time_per_estimate) / 2
    return CompiledRow(case.label, batch, eager * 1e3, compiled.time_per_estimate * 1e3,
                       compiled.compile_seconds)


def run(batches: tuple[int, ...] = (32, 512), min_run_time: float = 0.2,
        backend: str = "inductor", only: str = "", device: str = "cpu",
        report=print) -> list[CompiledRow]:
    device_of(device)
    rows = []
    for case in cases(only):
        for batch in batches:
            row = measure(case, batch, min_run_time, backend, device)
            rows.append(row)
            report(format_row(row))
    return rows


HEADER = (f"{'objective / estimator':42s} {'batch':>5s} {'eager ms':>9s} {'compiled ms':>11s} "
          f"{'ratio':>7s} {'compile s':>9s}")


def format_row(row: CompiledRow) -> str:
    if row.error:
        return f"{row.label:42s} {row.batch:5d} failed: {row.error}"
    return (f"{row.label:42s} {row.batch:5d} {row.eager_ms:9.3f} {row.compiled_ms:11.3f} "
            f"{row.ratio:6.2f}x {row.compile_seconds:9.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", action="store_true", help="(what this module measures)")
    parser.add_argument("--batches", default="32,512")
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), backend "
          f"{args.backend}; load {load()}")
    print(HEADER)
    run(tuple(int(b) for b in args.batches.split(",")), args.min_run_time, args.backend,
        args.only, args.device, report=lambda line: print(line, flush=True))
    print(f"load after: {load()}")


__all__ = ["CompiledRow", "FAMILIES", "cases", "main", "measure", "run"]


if __name__ == "__main__":
    main()
