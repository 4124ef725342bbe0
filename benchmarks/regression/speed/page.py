"""Write the performance page (docs/development/performance.md) from one run of the speed tools.

    python -m estibench.benchmarks.regression.speed --page [--out docs/development/performance.md]
        [--quick]

It measures, in this process, one torch thread: the hand-written comparison with the user's path
(`handwritten.compare`, every case at batch 32 and 512), the vectorized statistics against their
floor (`engine.part_d`), start-up (subprocesses), and torch.compile against eager
(`compiled.run`); and writes them as tables headed by the machine, the load before and after each
part, the date and this command. `--quick`: fewer calls and replicas (for a try, not the page).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from estibench.benchmarks import metrics
from estibench.benchmarks.regression.speed import compiled, engine, handwritten
from estibench.benchmarks.regression.speed.timing import load

COMMAND = "python -m estibench.benchmarks.regression.speed --page"
STARTUP = [
    ("import estibench", [sys.executable, "-c", "import estibench"]),
    ("import estibench.estimators (torch)", [sys.executable, "-c",
                                             "import estibench.estimators"]),
    ("estibench --help", [sys.executable, "-m", "estibench.cli.app", "--help"]),
    ("estibench list estimators", [sys.executable, "-m", "estibench.cli.app", "list",
                                   "estimators"]),
]


def startup(repeats: int = 3) -> list[tuple[str, float]]:
    """(what, median wall seconds of a fresh process) for each of `STARTUP`."""
    rows = []
    for label, command in STARTUP:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        rows.append((label, statistics.median(times)))
    return rows


def ratio_cell(value: float, target: float) -> str:
    """The ratio to two decimals, in bold where those two decimals exceed the target."""
    return f"**{value:.2f}**" if round(value, 2) > target else f"{value:.2f}"


def handwritten_section(rows: list[handwritten.Row], loads: tuple[str, str],
                        calls: int) -> str:
    batches = sorted({r.batch for r in rows})
    by = {(r.label, r.batch): r for r in rows}
    labels = list(dict.fromkeys(r.label for r in rows))
    head = "| objective / estimator | " + " | ".join(
        f"B={b} estibench | B={b} user | B={b} user, fast" for b in batches) + " |"
    lines = [head, "|---|" + "---:|" * 3 * len(batches)]
    for label in labels:
        cells = []
        for b in batches:
            r = by[(label, b)]
            cells += [ratio_cell(r.ratio("estibench"), 1.1), ratio_cell(r.ratio("user"), 1.1),
                      ratio_cell(r.ratio("user, fast"), 1.1)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    plain = " ".join(f"B={b}: {statistics.median([by[(lab, b)].ms['plain'] for lab in labels]):.2f}"
                     for b in batches)
    return f"""## Against hand-written torch

Time per gradient estimate (forward, estimator, backward) over a hand-written plain-torch step
of the same formula with the same networks and noise (a test checks that every side computes
the plain step's gradient), medians of per-call thread CPU time, the sides interleaved call by
call ({calls} calls per side at batch 32, fewer at 512). Columns: **estibench**, the shared
objective's own step; **user**, the same model written as a user writes it with the public
contract (a `torch.distributions` q, the user's own f, `torch.distributions.kl_divergence`,
torch's default argument validation); **user, fast**, the same with
`estibench.estimators.kl.kl_divergence` and the validation switched off
(`torch.distributions.Distribution.set_default_validate_args(False)`). Above 1.1 in bold.
Median plain step, ms: {plain}.
Load before and after: {loads[0]}; {loads[1]}.

{chr(10).join(lines)}
"""


def floor_section(rows: list[dict], loads: tuple[str, str], replicas: int) -> str:
    lines = ["| estimator | wrt | statistics ms | floor ms | ratio | ratio of minima |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['estimator']} | {r['wrt']} | {r['stats_ms']:.1f} | "
                     f"{r['floor_ms']:.1f} | {ratio_cell(r['ratio'], 1.2)} | {r['best']:.2f} |")
    return f"""## The gradient statistics against their floor

`gradient_stats(method="vectorized")` for M = {replicas} replicas on the categorical VAE (8 x 8,
batch 32), against its floor: a plain-torch `vmap(grad(loss))` of the same estimator's
surrogate on the same noise followed by the same reduction (chunks of 64 flattened to float64,
the streaming moments); a test checks that the floor's estimates are the engine's, replica by
replica. Wall times, medians of interleaved repeats; above 1.2 in bold. Load before and after:
{loads[0]}; {loads[1]}.

{chr(10).join(lines)}
"""


def startup_section(rows: list[tuple[str, float]]) -> str:
    lines = ["| command | seconds |", "|---|---:|"]
    lines += [f"| `{label}` | {seconds:.2f} |" for label, seconds in rows]
    return f"""## Start-up

Wall seconds of a fresh process (median of 3). `estibench --help` imports neither torch nor
pandas; `estibench list estimators` reads the built-in estimators' evaluation counts from a
table instead of running them.

{chr(10).join(lines)}
"""


def compile_section(rows: list[compiled.CompiledRow], loads: tuple[str, str],
                    min_run_time: float) -> str:
    lines = ["| objective / estimator | batch | eager ms | compiled ms | compiled / eager | "
             "compile s |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.label} | {r.batch} | failed: {r.error} | | | |")
        else:
            mark = f"**{r.ratio:.2f}**" if r.ratio < 0.9 else f"{r.ratio:.2f}"
            lines.append(f"| {r.label} | {r.batch} | {r.eager_ms:.3f} | {r.compiled_ms:.3f} | "
                         f"{mark} | {r.compile_seconds:.1f} |")
    return f"""## torch.compile

One estimator of each family: `metrics.throughput` eager, compiled (`compile=True`: the
estimate's forward through `torch.compile` with the inductor backend, static shapes, its
backward compiled by AOTAutograd), and eager again, {min_run_time} s of timing each; the ratio
is the compiled time per estimate over the mean of the two eager ones (below 0.9 in bold: there
compiling pays, once its compile seconds are spent). Load before and after: {loads[0]};
{loads[1]}. `[training] compile = true` in a suite compiles the training step's forward the
same way.

{chr(10).join(lines)}
"""


SPEED = "python -m estibench.benchmarks.regression.speed"
TOOL_ROWS = [
    (f"{SPEED}.handwritten", "one gradient estimate through estibench, and through the user's "
     "path, against a hand-written plain-torch step of the same formula, interleaved call by "
     "call (`--batch`, `--calls`, `--only`, `--clock wall`, `--device cuda`, `--no-user`, "
     "`--against CHECKOUT`)"),
    (f"{SPEED}.engine", "the gradient statistics: loop over vectorized (`--parts a`), "
     "vectorized cost per estimate over a bare forward and backward (`b`), each family's "
     "throughput overhead (`c`), the statistics against their plain-vmap floor (`d`)"),
    (f"{SPEED} --compile", "torch.compile against eager, one estimator per family"),
    (f"{SPEED} --gpu", "the GPU table: estimates per second per family at batch 1024 and "
     "4096, float32 and bfloat16, against the matmul-bound floor (a bare forward and "
     "backward), with the peak memory; CUDA events around blocks of calls (`--device cpu` "
     "runs the same code on a CPU)"),
    (f"{SPEED} --page", "this page"),
    (f"{SPEED}.per_evaluation", "each estimator's overhead per evaluation of f, relative to "
     "REINFORCE's"),
    (f"{SPEED}.step_profile", "the operations and Python calls each side of a `handwritten` "
     "case runs per step"),
]
TOOLS = ("## The tools\n\n| command | what it measures |\n|---|---|\n"
         + "".join(f"| `{command}` | {what} |\n" for command, what in TOOL_ROWS)
         + """
Every figure is a ratio or a time measured in the same process as its reference, interleaved,
so a change in the machine's load hits both sides; on a shared machine the same ratio moves by
tens of percent between runs, so compare ratios from one run.
""")

GPU = """## GPU

On a machine with a GPU one command measures the GPU table (it refuses to start without CUDA):

<!-- not-run: needs a GPU -->
```bash
python -m estibench.benchmarks.regression.speed --gpu --out gpu-throughput.md
```

The training step of a suite's cell reads the device only on its log steps and checkpoints (its
finiteness checks wait there), and estimators with running statistics (the EMA baseline, NVIL)
keep them on the device of q.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", action="store_true", help="(what this module writes)")
    parser.add_argument("--out", default="docs/development/performance.md")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-compile", action="store_true",
                        help="leave torch.compile out (minutes of compiling on a CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    calls, replicas = (60, 256) if args.quick else (300, 1024)
    env = metrics.environment()
    started = datetime.datetime.now().astimezone()
    print(f"load before: {load()}", flush=True)

    loads_h = (load(), "")
    rows = handwritten.compare(handwritten.CASES, (32, 512), calls,
                               report=lambda line: print(line, flush=True))
    loads_h = (loads_h[0], load())
    loads_f = (load(), "")
    with contextlib.redirect_stdout(io.StringIO()):
        floor_rows = engine.part_d(2 if args.quick else 3, replicas)
    loads_f = (loads_f[0], load())
    print("floor done", flush=True)
    start_rows = startup()
    print("start-up done", flush=True)
    sections = [handwritten_section(rows, loads_h, calls), floor_section(floor_rows, loads_f,
                                                                         replicas),
                startup_section(start_rows)]
    if not args.skip_compile:
        loads_c = (load(), "")
        compile_time = 0.05 if args.quick else 0.2
        compile_rows = compiled.run(min_run_time=compile_time,
                                    report=lambda line: print(line, flush=True))
        sections.append(compile_section(compile_rows, (loads_c[0], load()), compile_time))
    dirty = ", with uncommitted changes" if env["dirty"] else ""
    machine = f"{env['device']}, {os.cpu_count()} cores shared with other work"
    header = f"""# Performance

Generated by `{COMMAND}` on {started:%Y-%m-%d %H:%M %Z}.
Machine: {machine}; one torch thread; torch {torch.__version__}; commit
{str(env['commit'])[:10]}{dirty}. Every figure below was measured by that run; the ratios move
by tens of percent between runs on a shared machine, so read them against each other.
"""
    Path(args.out).write_text("\n".join([header, *sections, GPU, TOOLS]))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
