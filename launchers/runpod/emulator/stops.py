"""The per-job stop ledger: when each stop was signalled, delivered to its worker and released by it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from launchers.runpod.emulator.workers import Worker


@dataclass
class Stop:
    worker_id: str
    signalled: float
    delivered: float | None = None  # handed to the worker's job-stop poll
    released: float | None = None  # the worker no longer listed it (ping, job-take) or ended


class StopLedger:
    """Stops of jobs that were in progress (cancel, execution timeout), in monotonic time from ``origin``."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.stops: dict[str, Stop] = {}

    def signalled(self, job_id: str, worker_id: str, now: float) -> None:
        self.stops[job_id] = Stop(worker_id, now)

    def delivered(self, job_ids: Iterable[str], now: float) -> None:
        for job_id in job_ids:
            if (stop := self.stops.get(job_id)) is not None and stop.delivered is None:
                stop.delivered = now

    def released(self, worker: Worker, held: set[str], now: float) -> None:
        """The worker says it holds only ``held``: its delivered stops outside it are released."""
        for job_id, stop in self.stops.items():
            pending = stop.delivered is not None and stop.released is None
            if stop.worker_id == worker.id and pending and job_id not in held:
                stop.released = now

    def unheeded(self, worker: Worker, held: set[str], now: float, after_s: float) -> list[str]:
        """Delivered stops the worker still holds ``after_s`` later: the SDK drops a stop that comes before
        the job's task exists, so RunPod's stop channel is asked again for these."""
        return [
            job_id
            for job_id in sorted(held)
            if (stop := self.stops.get(job_id)) is not None
            and stop.worker_id == worker.id
            and stop.delivered is not None
            and stop.released is None
            and now - stop.delivered > after_s
        ]

    def exited(self, workers: Iterable[Worker], now: float) -> None:
        ids = {w.id for w in workers}
        for stop in self.stops.values():
            if stop.worker_id in ids and stop.released is None:
                stop.released = now

    def snapshot(self) -> dict[str, dict[str, Any]]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.origin, 3)

        return {
            job_id: {
                "worker_id": stop.worker_id,
                "signalled": rel(stop.signalled),
                "delivered": rel(stop.delivered),
                "released": rel(stop.released),
                "release_s": None
                if stop.released is None or stop.delivered is None
                else round(stop.released - stop.delivered, 3),
            }
            for job_id, stop in self.stops.items()
        }
