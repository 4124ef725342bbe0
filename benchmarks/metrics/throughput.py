"""Throughput: time per gradient estimate and per training step, and peak memory.

    result = throughput(objective, estimator, x, num_samples=4, device="auto")
    result.time_per_estimate, result.overhead_ratio, result.as_dict()

Definitions (one "gradient estimate" = one stochastic gradient of the batch objective):
- time_per_estimate: median seconds of forward + estimator + backward on the batch
  (`objective.estimate(x, estimator, S)`, loss summed, aux_loss added, `.backward()`), gradients
  cleared (set to None) first;
- time_per_step: the same plus `optimizer.zero_grad` and `optimizer.step` (a training step);
- floor_time: a bare forward + backward of the same networks with the same batch and S
  (`floor.bare_step`); overhead_ratio = time_per_estimate / floor_time;
- estimates_per_second = 1 / time_per_estimate; samples_per_second = S * B / time_per_estimate
  (latent samples drawn and differentiated per second); time_per_sample = its inverse.

compile=True: the forward part of the estimate (objective, estimator, surrogate) goes through
`torch.compile` (AOTAutograd compiles its backward too; `.backward()` and the optimizer step stay
eager), compiled in the warm-up, whose first call's seconds are `compile_seconds`; a string
names the `torch.compile` backend ("eager" only traces, for tests). Measured on 2 busy CPU cores
it does not reliably help at these sizes (see the README's performance section).

Timing: on a CPU `torch.utils.benchmark.Timer.blocked_autorange` after warm-up, on
`torch.get_num_threads()` threads; on CUDA blocks of calls between two CUDA events, each block
waited for (`_cuda_event_time`); medians and interquartile ranges over the blocks. The
objective and estimator are deep copies moved to the device and dtype, so the optimizer steps
never touch the caller's model; the caller's random state is preserved.

Peak memory (`peak_memory_method` says which):
- "cuda_max_memory_allocated": torch.cuda.max_memory_allocated over one training step after
  reset_peak_memory_stats (absolute: parameters, optimizer state and batch included);
- "cpu_profiler": torch's CPU allocator exposes no peak statistic and tracemalloc does not see
  torch's allocations, so one extra training step runs under torch.profiler with
  profile_memory=True; the running sum of its raw allocation and free events (in time order)
  gives the peak working memory of the step, to which the bytes of the tensors alive throughout
  (parameters, gradients, optimizer state, batch) are added (the profiler's first use in a
  process costs about a second);
- "ru_maxrss_increase": fallback when the profiler is unavailable: the growth of the process's
  maximum resident set size over the measured region (a lower bound, 0 whenever the process
  had already used as much memory before).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.benchmark import Timer

from estibench.benchmarks.objectives import Objective
from estibench.estimators import Estimator

from .environment import device_name, machine_load
from .errors import MetricsError, choice, integer
from .floor import bare_step

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class ThroughputResult:
    """Timings in seconds (medians over timed blocks; *_iqr their interquartile ranges)."""

    objective: str
    estimator: str
    device: str
    device_name: str
    dtype: str
    threads: int
    torch_version: str
    batch_size: int
    num_samples: int
    time_per_estimate: float
    time_per_estimate_iqr: float
    time_per_step: float
    time_per_step_iqr: float
    floor_time: float
    floor_time_iqr: float
    overhead_ratio: float
    estimates_per_second: float
    samples_per_second: float
    time_per_sample: float
    peak_memory_bytes: float
    peak_memory_method: str
    load_1min: float  # the machine's load: the larger of before and after timing
    cpu_count: int
    runnable_threads: int  # other runnable threads after timing (-1: unknown)
    busy: bool  # load_1min > cpu_count: the times include contention
    compiled: bool = False
    compile_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every field, flat (numbers as floats/ints, descriptions as strings)."""
        return asdict(self)


def throughput(
    objective: Objective,
    estimator: Estimator,
    x: Tensor | None = None,
    num_samples: int = 1,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    min_run_time: float = 0.2,
    optimizer: Literal["adam", "sgd"] = "adam",
    *,
    batch_size: int | None = None,
    seed: int = 0,
    warmup: int = 3,
    memory: bool = True,
    compile: bool | str = False,
) -> ThroughputResult:
    """Time `estimator` on `objective`: per gradient estimate, per training step and the floor.

    x: the batch (B, D); or None with `batch_size` (default 32) for random binary data of the
        objective's input size; toys take None (their batch is their `dims`).
    device: "cpu", "cuda" or "auto" (CUDA when available). dtype: the floating dtype.
    min_run_time: seconds of timing per measured function (three are measured).
    optimizer: "adam" or "sgd", over the objective's and the estimator's parameters.
    memory: measure the peak memory (one extra training step); NaN when False.
    compile: True (backend "inductor") or a backend name: the estimate's forward through
        `torch.compile` (see the module docstring); False: eager.
    """
    if not isinstance(device, str) or _device_type(device) not in DEVICES:
        raise MetricsError(f"device must be one of 'cpu', 'cuda' (or 'cuda:N'), 'auto', got "
                           f"{device!r}")
    choice("optimizer", optimizer, OPTIMIZERS)
    integer("num_samples", num_samples, 1)
    integer("warmup", warmup, 1)
    if not (isinstance(min_run_time, (int, float)) and min_run_time > 0):
        raise MetricsError(f"min_run_time must be a positive number of seconds, got "
                           f"{min_run_time!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise MetricsError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if not (isinstance(compile, bool) or (isinstance(compile, str) and compile)):
        raise MetricsError(f"compile must be True, False or a torch.compile backend name, got "
                           f"{compile!r}")
    target = _resolve_device(device)

    cuda_devices = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        model = copy.deepcopy(objective).to(device=target, dtype=dtype).train()
        est = copy.deepcopy(estimator).to(device=target).train()
        batch = _batch(model, x, batch_size, target, dtype, seed)
        parameters = [p for p in [*model.parameters(), *est.parameters()] if p.requires_grad]
        opt = (torch.optim.Adam(parameters) if optimizer == "adam"
               else torch.optim.SGD(parameters, lr=1e-3))

        def surrogate() -> Tensor:
            out = model.estimate(batch, est, num_samples)
            loss = -out.loss.sum()
            return loss if out.aux_loss is None else loss + out.aux_loss.sum()

        forward = surrogate
        compile_seconds = 0.0
        if compile:
            backend = "inductor" if compile is True else compile
            forward = torch.compile(surrogate, backend=backend, dynamic=False)
            started = time.perf_counter()
            forward().backward()  # compiles (timed apart from the measurement)
            compile_seconds = time.perf_counter() - started

        def estimate() -> None:
            for p in parameters:
                p.grad = None
            forward().backward()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            forward().backward()
            opt.step()

        bare = bare_step(model, batch, num_samples)

        def floor() -> None:
            for p in parameters:
                p.grad = None
            bare()

        before = machine_load()
        times = {name: _time(fn, min_run_time, warmup, target)
                 for name, fn in (("estimate", estimate), ("step", step), ("floor", floor))}
        after = machine_load()
        peak, method = (
            _peak_memory(step, target, [*parameters, batch], opt) if memory
            else (math.nan, "not measured")
        )

    per_estimate = times["estimate"][0]
    samples = num_samples * _batch_size(model, batch)
    return ThroughputResult(
        objective=objective.name,
        estimator=estimator.name,
        device=str(target),
        device_name=device_name(target),
        dtype=str(dtype).replace("torch.", ""),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        batch_size=_batch_size(model, batch),
        num_samples=num_samples,
        time_per_estimate=per_estimate,
        time_per_estimate_iqr=times["estimate"][1],
        time_per_step=times["step"][0],
        time_per_step_iqr=times["step"][1],
        floor_time=times["floor"][0],
        floor_time_iqr=times["floor"][1],
        overhead_ratio=per_estimate / times["floor"][0],
        estimates_per_second=1.0 / per_estimate,
        samples_per_second=samples / per_estimate,
        time_per_sample=per_estimate / samples,
        peak_memory_bytes=float(peak),
        peak_memory_method=method,
        load_1min=max(before["load_1min"], after["load_1min"]),
        cpu_count=after["cpu_count"],
        runnable_threads=after["runnable_threads"],
        busy=before["busy"] or after["busy"],
        compiled=bool(compile),
        compile_seconds=compile_seconds,
    )


# ------------------------------------------------------------------------------- internals


def _device_type(device: str) -> str:
    if device == "auto":
        return device
    try:
        return torch.device(device).type
    except (RuntimeError, TypeError):
        return device


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise MetricsError(f"device={device!r}: CUDA is not available here; use 'cpu' or 'auto'")
    return target


def _batch(
    model: Objective,
    x: Tensor | None,
    batch_size: int | None,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> Tensor | None:
    if model.example_input() is None:  # a toy: no data
        if x is not None or batch_size is not None:
            raise MetricsError(f"objective '{model.name}' takes no data: pass x=None and no "
                               f"batch_size")
        return None
    if x is not None:
        if batch_size is not None and batch_size != x.shape[0]:
            raise MetricsError(f"batch_size={batch_size} disagrees with x of shape "
                               f"{tuple(x.shape)}; pass one or the other")
        return x.to(device=device, dtype=dtype)
    size = integer("batch_size", DEFAULT_BATCH if batch_size is None else batch_size, 1)
    example = model.example_input()
    generator = torch.Generator().manual_seed(seed)
    data = torch.rand((size, example.shape[-1]), generator=generator) < 0.5
    return data.to(device=device, dtype=dtype)


def _batch_size(model: Objective, batch: Tensor | None) -> int:
    if batch is not None:
        return int(batch.shape[0])
    with torch.no_grad():
        return int(model.posterior(None).batch_shape.numel())


def _time(
    fn: Callable[[], None], min_run_time: float, warmup: int, device: torch.device
) -> tuple[float, float]:
    """(median, interquartile range) of the seconds per call of `fn`, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return _cuda_event_time(fn, min_run_time)
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return float(measurement.median), float(measurement.iqr)


def _cuda_event_time(fn: Callable[[], None], min_run_time: float,
                     blocks: int = 5) -> tuple[float, float]:
    """(median, interquartile range) of the seconds per call of `fn` on CUDA: blocks of n calls
    between two CUDA events, each block waited for (n grown tenfold until a block lasts 1 ms;
    at least `blocks` blocks and `min_run_time` seconds in all)."""

    def block(n: int) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # milliseconds

    n = 1
    while (elapsed := block(n)) < 1e-3 and n < 10_000:
        n *= 10
    per_call, total = [elapsed / n], elapsed
    while total < min_run_time or len(per_call) < blocks:
        elapsed = block(n)
        per_call.append(elapsed / n)
        total += elapsed
    quartiles = statistics.quantiles(per_call, n=4)
    return statistics.median(per_call), quartiles[2] - quartiles[0]


def _tensor_bytes(tensors: list[Tensor | None], optimizer: torch.optim.Optimizer) -> int:
    """Bytes of tensors alive across a step: those given, their gradients, optimizer state."""
    seen: set[int] = set()
    total = 0
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, Tensor)]
    grads = [t.grad for t in tensors if t is not None]
    for t in [*tensors, *grads, *state]:
        if t is not None and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def _peak_memory(
    step: Callable[[], None],
    device: torch.device,
    alive: list[Tensor | None],
    optimizer: torch.optim.Optimizer,
) -> tuple[float, str]:
    """Peak bytes over one training step, and the method used (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    before = _max_rss()
    try:
        if threading.current_thread() is not threading.main_thread():
            # The profiler must start on the thread that registered it (a Dask worker runs
            # cells on its own threads): use the fallback there.
            raise RuntimeError("the memory profiler only runs on the main thread")
        working = peak_tensor_bytes(step)
    except Exception:  # a profiler without raw memory events: fall back, never fail
        step()
        return float(max(0, _max_rss() - before)), "ru_maxrss_increase"
    return float(working + _tensor_bytes(alive, optimizer)), "cpu_profiler"


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: the profiler's native code logs every start and
    stop there, which would bury a progress bar. Python-level errors still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_tensor_bytes(function: Callable[[], None]) -> int:
    """Peak bytes of CPU tensor memory allocated while `function()` runs, beyond what was
    allocated before: the profiler's raw allocation (+) and free (-) events, summed in time
    order. Deterministic: the same code allocates the same bytes."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU],
                                         profile_memory=True) as prof:
        function()
    raw = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    changes = sorted((e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in changes:
        running += nbytes
        peak = max(peak, running)
    return peak


def _max_rss() -> int:
    """The process's maximum resident set size in bytes (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if platform.system() == "Darwin" else rss * 1024)


__all__ = ["DEVICES", "OPTIMIZERS", "ThroughputResult", "throughput"]
