"""A per-job request to stop a trial, set from RunPod's event loop and honoured by the training thread."""

from __future__ import annotations

import threading
import time

RUNPOD_STOP = "stopped by RunPod: job cancelled or timed out"


class TrialStopped(Exception):
    """A trial stopped on request: its run ends KILLED and it scores nothing."""

    def __init__(self, why: str, batches_after_stop: int, latency_s: float) -> None:
        super().__init__(f"{why} after {batches_after_stop} batch(es), {latency_s:.1f} s")
        self.why = why
        self.batches_after_stop = batches_after_stop
        self.latency_s = latency_s


class StopRequest(threading.Event):
    """A ``threading.Event`` that remembers why and when it was set, so a stopped trial can say how fast
    it stopped."""

    def __init__(self, why: str = RUNPOD_STOP) -> None:
        super().__init__()
        self.why = why
        self.requested_at: float | None = None

    def set(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
        super().set()

    def stopped(self, batches_after_stop: int) -> TrialStopped:
        """The exception that ends the trial now, timing the stop from the request."""
        requested = self.requested_at if self.requested_at is not None else time.monotonic()
        return TrialStopped(self.why, batches_after_stop, time.monotonic() - requested)

    def check(self) -> None:
        """Raise ``TrialStopped`` if the stop was requested."""
        if self.is_set():
            raise self.stopped(0)
