"""Signals that stop this process the way Ctrl-C does, whether one has come, and where it may land.

An interrupt can surface as another exception: TensorFlow turns a KeyboardInterrupt raised while it traces
a layer into a TypeError. Code that must tell a stopped trial from a failed one asks ``received()``
rather than trusting the exception's type.

A KeyboardInterrupt raised at an arbitrary point can leave a library half-way through changing its own
state (sqlparse's lexer half built, which then mis-parses every MLflow search; a study told in its
database but not in memory), and the code that records how the sweep ended would then run on that state.
So inside ``deferred()`` the first signal takes effect only where the code waits (``interruptible()``) or
checks (``check()``); any further one stops at once, for a user who will not wait.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_received: list[int] = []


class _Deferral:
    """Where the main thread is: how deep in ``deferred()``, whether waiting, and what signal is held."""

    depth = 0
    waiting = False
    pending: int | None = None
    # signals that came in the outermost deferred() so far
    count = 0


_now = _Deferral()


def _interrupt(signum: int, frame: Any) -> None:
    _received.append(signum)
    _now.count += 1
    if _now.depth and not _now.waiting and _now.count == 1:
        _now.pending = signum
        return
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on(*signums: int) -> None:
    """Make each of ``signums`` raise KeyboardInterrupt, as Ctrl-C does, and remember that it came."""
    for signum in signums:
        signal.signal(signum, _interrupt)


def received() -> bool:
    """Whether one of the signals given to ``stop_on`` has come."""
    return bool(_received)


def check() -> None:
    """Raise the KeyboardInterrupt of a signal ``deferred()`` held back, if one came."""
    signum, _now.pending = _now.pending, None
    if signum is not None:
        raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def deferred() -> Iterator[None]:
    """Hold the first signal given to ``stop_on`` back until the code waits or checks; one still held when
    the block ends is raised then (or dropped, when the block ends with another exception).

    Only the signals the process's entry point gave to ``stop_on`` are held: a program that left Ctrl-C
    to Python (a Hydra app of its own on hpo's launcher) keeps its handler and its behaviour.
    """
    outermost = not _now.depth
    if outermost:
        _now.count, _now.pending = 0, None
    _now.depth += 1
    try:
        yield
    except BaseException:
        if outermost:
            _now.pending = None
        raise
    finally:
        _now.depth -= 1
    if outermost:
        check()


@contextmanager
def interruptible() -> Iterator[None]:
    """A wait that a signal may end at once (nothing is half-changed while the code only waits)."""
    check()
    _now.waiting = True
    try:
        yield
    finally:
        _now.waiting = False
