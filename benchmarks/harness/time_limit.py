"""A time limit on work that calls into plugins (a cell, a planning dry run), so that one that
never returns fails alone instead of stalling the run.

The limit is a SIGALRM timer, so it applies where the work runs on a process's main thread: in
process, in pool workers and in submitit tasks. Dask workers run cells on threads, where no
signal can be delivered: there the limit is not enforced (Dask's own timeouts apply). A
plugin stuck inside one long C call (not Python code, not a sleep) is stopped when it returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

PLAN_TIME_LIMIT = 120.0  # seconds for one pair's dry run (one estimate on one example)


class TimeLimitExceeded(Exception):
    """The work ran past its time limit; the message says what and the limit."""


def enforceable() -> bool:
    """Whether a limit can be enforced here (a main thread on a system with SIGALRM)."""
    return (hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread())


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise `TimeLimitExceeded` in the block once `seconds` have passed (None: no limit)."""
    if seconds is None or not enforceable():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"{what} exceeded its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["PLAN_TIME_LIMIT", "TimeLimitExceeded", "enforceable", "time_limit"]
