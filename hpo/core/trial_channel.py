"""The channel between a trial and whatever runs it in the same process: progress out, a prune in.

``launchers`` and ``worker`` never import each other, so both meet here. The runner (a local slot, a SLURM
job, a RunPod handler) sets where the trial's per-epoch progress goes and asks for a prune; the trial
reports each epoch and registers the stop that a prune sets. A prune asked before the trial registers
(while it loads its data) stops it as it registers; ``reset()`` forgets one asked of a job already gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = dict[str, Any]
"""One epoch's report: ``epoch`` (1-based), ``epochs``, ``objective`` and that epoch's ``metrics``."""


class _Channel:
    """The process's one channel: a trial at a time runs in it."""

    sink: Callable[[Progress], None] | None = None
    stop: Callable[[], None] | None = None
    prune_asked = False


_channel = _Channel()


def set_sink(sink: Callable[[Progress], None] | None) -> None:
    """Send every epoch's progress to ``sink`` from now on (None: drop it)."""
    _channel.sink = sink


def report(progress: Progress) -> None:
    """Hand one epoch's progress to the runner's sink, if it set one."""
    if _channel.sink is not None:
        _channel.sink(progress)


def prune() -> None:
    """Stop the running trial as pruned at its next batch, or the next trial to register if none runs."""
    _channel.prune_asked = True
    if _channel.stop is not None:
        _channel.stop()


def reset() -> None:
    """Forget a prune asked of an earlier job; a runner calls it before each job."""
    _channel.prune_asked = False


@contextmanager
def trial(stop: Callable[[], None]) -> Iterator[None]:
    """Register the running trial's ``stop`` (what a prune calls) while the block runs."""
    _channel.stop = stop
    try:
        if _channel.prune_asked:
            stop()
        yield
    finally:
        _channel.stop = None
