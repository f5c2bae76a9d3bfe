"""A per-job request to stop a trial, set from another thread (RunPod's event loop, a runner's prune) and
honoured by the training thread."""

from __future__ import annotations

import threading
import time
from typing import Any

RUNPOD_STOP = "stopped by RunPod: job cancelled or timed out"
PRUNED = "pruned"


class TrialStopped(Exception):
    """A trial stopped on request, after ``epochs`` whole epochs: its run ends KILLED and it scores nothing,
    unless it was ``pruned`` (the run ends FINISHED, tagged pruned, and the study is told PRUNED)."""

    def __init__(
        self, why: str, batches_after_stop: int, latency_s: float, epochs: int = 0, pruned: bool = False
    ) -> None:
        super().__init__(f"{why} after {batches_after_stop} batch(es), {latency_s:.1f} s")
        self.why = why
        self.batches_after_stop = batches_after_stop
        self.latency_s = latency_s
        self.epochs = epochs
        self.pruned = pruned

    def __reduce__(self) -> tuple[Any, ...]:
        # a local job's return carries the exception back to the driver, pickled
        return (type(self), (self.why, self.batches_after_stop, self.latency_s, self.epochs, self.pruned))


class StopRequest(threading.Event):
    """A ``threading.Event`` that remembers why and when it was set, so a stopped trial can say how fast
    it stopped and whether it was pruned."""

    def __init__(self, why: str = RUNPOD_STOP) -> None:
        super().__init__()
        self.why = why
        self.pruned = False
        self.requested_at: float | None = None

    def set(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
        super().set()

    def prune(self) -> None:
        """Stop the trial because the study pruned it (a stop already requested for another reason stays)."""
        if not self.is_set():
            self.why, self.pruned = PRUNED, True
        self.set()

    def stopped(self, batches_after_stop: int, epochs: int = 0) -> TrialStopped:
        """The exception that ends the trial now, after ``epochs`` whole epochs, timing the stop from the
        request."""
        requested = self.requested_at if self.requested_at is not None else time.monotonic()
        return TrialStopped(self.why, batches_after_stop, time.monotonic() - requested, epochs, self.pruned)

    def check(self, epochs: int = 0) -> None:
        """Raise ``TrialStopped`` if the stop was requested."""
        if self.is_set():
            raise self.stopped(0, epochs)
