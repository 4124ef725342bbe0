"""What the speed tools share: the device a measurement runs on, a per-call timer for it, and
the machine's load printed beside every table.

On a CPU a call is timed by the calling thread's CPU time (`time.thread_time`: with one intra-op
thread torch runs forward and backward on it, and a busy machine's preemptions do not inflate
it) or by wall time. On CUDA a call is timed by a pair of CUDA events around it, the end event
waited for (kernels run asynchronously: a host clock would time their launch only), so the time
is the device's, launches and kernels included.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import torch

Call = Callable[[], object]
CallTimer = Callable[[Call], float]


class DeviceUnavailable(RuntimeError):
    """The device a speed measurement asks for is not on this machine."""


def device_of(name: str) -> torch.device:
    """The torch device called `name` ("cpu", "cuda", "cuda:1"), checked to be present: a CUDA
    device without CUDA raises `DeviceUnavailable` naming what is missing."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise DeviceUnavailable(f"--device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda
            raise DeviceUnavailable(
                f"--device {name}: CUDA is not available on this machine (torch "
                f"{torch.__version__}, "
                + (f"built with CUDA {built}, but no GPU or driver is visible)" if built
                   else "built without CUDA)")
                + "; run on a machine with a GPU, or pass --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"--device {name}: this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise DeviceUnavailable(f"--device {name}: the speed tools time 'cpu' and 'cuda' "
                                "devices")
    return device


def call_timer(device: torch.device, clock: str = "cpu") -> CallTimer:
    """A function timing one call in seconds on `device`: CUDA events on a GPU; on the CPU the
    thread's CPU time (`clock="cpu"`) or wall time (`clock="wall"`)."""
    if device.type == "cuda":
        def cuda_timed(call: Call) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3  # milliseconds

        return cuda_timed
    tick = time.thread_time if clock == "cpu" else time.perf_counter

    def timed(call: Call) -> float:
        started = tick()
        call()
        return tick() - started

    return timed


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def on_device(device: torch.device) -> Iterator[None]:
    """Tensors created inside (networks, data, noise, constants) land on `device`. On the CPU
    nothing is switched: the default-device mode would add its own cost to every call."""
    if device.type == "cpu":
        yield
    else:
        with device:
            yield


def load() -> str:
    """The 1, 5 and 15-minute load averages and the core count, as printed beside a table."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def peak_memory(device: torch.device) -> Callable[[], float]:
    """Reset the device's peak-memory counter and return a function reading the peak bytes
    since (CUDA only; NaN on a CPU, whose allocator keeps no peak)."""
    if device.type != "cuda":
        return lambda: float("nan")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)

    def read() -> float:
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device))

    return read


__all__ = ["DeviceUnavailable", "call_timer", "device_of", "load", "on_device", "peak_memory",
           "synchronize"]
