"""The GPU table: estimates per second of every estimator family at large batch, in float32 and
bfloat16, against the matmul-bound floor, with the peak memory.

    python -m estibench.benchmarks.regression.speed --gpu [--out gpu.md]
    python -m estibench.benchmarks.regression.speed --gpu --device cpu --batches 8 \
        --dtypes float32 --min-run-time 0.01       # the same code path on a CPU, tiny

For each family (one case per estimator of `handwritten.CASES`, on its objective), batch size
and dtype: `metrics.throughput` on the device (CUDA events around blocks of calls, each block
waited for), whose estimate is forward + estimator + backward, and whose floor is a bare forward
+ backward of the same networks with the same batch and S (`metrics.floor.bare_step`: the
matrix products every estimator must at least do). The table gives estimates per second, the
floor's, their ratio (time per estimate over the floor) and the peak memory of a training step
(`torch.cuda.max_memory_allocated`). The machine, torch, CUDA and the date head the table.
"""

from __future__ import annotations

import argparse
import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from estibench import estimators
from estibench.benchmarks import metrics, objectives
from estibench.benchmarks.regression.speed.handwritten import CASES, Case
from estibench.benchmarks.regression.speed.timing import DeviceUnavailable, device_of, load

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


def families() -> list[Case]:
    """One case per estimator name (its first in `CASES`)."""
    seen: set[str] = set()
    chosen = []
    for case in CASES:
        if case.estimator not in seen:
            seen.add(case.estimator)
            chosen.append(case)
    return chosen


@dataclass(frozen=True)
class GpuRow:
    label: str
    batch: int
    dtype: str
    estimates_per_second: float
    floor_per_second: float
    ratio: float
    peak_memory_bytes: float
    error: str = ""


def measure(case: Case, batch: int, dtype: torch.dtype, device: str,
            min_run_time: float) -> GpuRow:
    """`throughput` of the case's estimator on its objective at this batch size and dtype."""
    torch.manual_seed(0)
    objective = objectives.get(case.objective, input_dim=64, hidden=200, kl=case.kl,
                               **case.objective_options)
    estimator = estimators.get(case.estimator, **case.estimator_options)
    name = str(dtype).replace("torch.", "")
    try:
        with torch.no_grad():  # parameters sized by q (NVIL's, RELAX's) built before copying
            estimator.prepare(objective.posterior(torch.zeros(1, 64)))
        result = metrics.throughput(objective, estimator, batch_size=batch,
                                    num_samples=case.samples, device=device, dtype=dtype,
                                    min_run_time=min_run_time, memory=device != "cpu")
    except Exception as error:  # a dtype an estimator's op lacks: named in the table
        return GpuRow(case.label, batch, name, math.nan, math.nan, math.nan, math.nan,
                      f"{type(error).__name__}: {str(error).splitlines()[0][:80]}")
    return GpuRow(case.label, batch, name, result.estimates_per_second,
                  1.0 / result.floor_time, result.overhead_ratio, result.peak_memory_bytes)


def table(rows: list[GpuRow]) -> str:
    """The rows as a Markdown table."""
    lines = ["| objective / estimator | batch | dtype | estimates/s | floor/s | ratio | "
             "peak MiB |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.label} | {r.batch} | {r.dtype} | failed: {r.error} | | | |")
            continue
        memory = "n/a" if math.isnan(r.peak_memory_bytes) else f"{r.peak_memory_bytes / 2**20:.0f}"
        lines.append(f"| {r.label} | {r.batch} | {r.dtype} | {r.estimates_per_second:,.0f} | "
                     f"{r.floor_per_second:,.0f} | {r.ratio:.2f}x | {memory} |")
    return "\n".join(lines)


def heading(device: torch.device, command: str) -> str:
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else metrics.environment()["device"])
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return (f"{name}; torch {torch.__version__}{cuda}; "
            f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; load {load()}\n\n"
            f"Command: `{command}`\n")


def run(device: str = "cuda", batches: tuple[int, ...] = (1024, 4096),
        dtypes: tuple[str, ...] = ("float32", "bfloat16"), min_run_time: float = 0.5,
        only: str = "", report=print) -> list[GpuRow]:
    """Every family at every batch size and dtype; each row reported as it is measured."""
    target = device_of(device)
    if target.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    rows = []
    for case in families():
        if only not in case.label:
            continue
        for batch in batches:
            for dtype in dtypes:
                row = measure(case, batch, DTYPES[dtype], str(target), min_run_time)
                rows.append(row)
                report(table([row]).splitlines()[-1])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="(the table this module writes)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", default="1024,4096")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help=f"comma-separated, of {', '.join(DTYPES)}")
    parser.add_argument("--min-run-time", type=float, default=0.5,
                        help="seconds of timing per measured function")
    parser.add_argument("--only", default="", help="the families whose label contains this")
    parser.add_argument("--out", default="", help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    dtypes = tuple(args.dtypes.split(","))
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise SystemExit(f"--dtypes: {', '.join(unknown)} not among {', '.join(DTYPES)}")
    try:
        device = device_of(args.device)
    except DeviceUnavailable as error:
        raise SystemExit(str(error)) from None
    command = "python -m estibench.benchmarks.regression.speed --gpu" + (
        f" --device {args.device}" if args.device != "cuda" else "")
    print(heading(device, command))
    print("\n".join(table([]).splitlines()))
    rows = run(args.device, tuple(int(b) for b in args.batches.split(",")), dtypes,
               args.min_run_time, args.only, report=lambda line: print(line, flush=True))
    if args.out:
        Path(args.out).write_text(f"# GPU throughput\n\n{heading(device, command)}\n"
                                  f"{table(rows)}\n")
        print(f"\nwritten: {args.out}")


__all__ = ["GpuRow", "families", "main", "measure", "run", "table"]


if __name__ == "__main__":
    main()
