"""RunPod's autoscaler: keep between ``workers.min`` and ``workers.max`` workers, sized by demand.

Demand is the jobs IN_QUEUE or IN_PROGRESS that are not ``policy.lowPriority``. REQUEST_COUNT scaling
wants ``ceil(demand / requestCount)`` workers; QUEUE_DELAY adds one when the oldest normal queued job has
waited longer than ``queueDelay`` s. Idle workers stop after ``idleTimeout`` s, down to ``workers.min``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from launchers.runpod.emulator.faults import FaultInjector
from launchers.runpod.emulator.jobs import Job
from launchers.runpod.emulator.protocol import IN_PROGRESS, IN_QUEUE
from launchers.runpod.emulator.workers import INITIALIZING, RUNNING, THROTTLED, Worker, WorkerPool

_STOP_ORDER = {THROTTLED: 0, INITIALIZING: 1}  # which workers go first when there are too many


def wanted(settings: dict[str, Any], jobs: Iterable[Job], running: int, now: float) -> int:
    """How many workers the endpoint's scaling policy wants for these jobs, before min and max."""
    normal = [job for job in jobs if not job.low_priority and job.status in (IN_QUEUE, IN_PROGRESS)]
    scaling = settings["scaling"]
    if scaling["type"] == "QUEUE_DELAY":
        waits = [now - job.queued for job in normal if job.status == IN_QUEUE]
        return running + (1 if waits and max(waits) > scaling.get("queueDelay", 4) else 0)
    return math.ceil(len(normal) / max(1, scaling.get("requestCount", 1)))


class Scaler:
    """One scaling decision per ``tick``: place, unthrottle or stop workers of ``pool``."""

    def __init__(
        self,
        pool: WorkerPool,
        faults: FaultInjector,
        settings: Callable[[], dict[str, Any]],
        cold_start_s: float,
        flashboot_cold_start_s: float,
        stop_grace_s: float = 3.0,
    ) -> None:
        self.pool = pool
        self.faults = faults
        self.settings = settings
        self.cold_start_s = cold_start_s
        self.flashboot_cold_start_s = flashboot_cold_start_s
        self.stop_grace_s = stop_grace_s

    def tick(self, jobs: Iterable[Job]) -> None:
        settings = self.settings()
        limits, now = settings["workers"], time.monotonic()
        live = self.pool.live()
        running = sum(w.state == RUNNING for w in live)
        target = min(limits["max"], max(limits["min"], wanted(settings, jobs, running, now)))
        self._shrink_to(limits["max"], live)
        live = self.pool.live()
        throttled = [w for w in live if w.throttled]
        for worker in throttled[: max(0, len(live) - target)]:
            self.pool.stop(worker)  # no longer wanted, never placed: nothing was billed
        live = self.pool.live()
        while len(live) < target:
            gpu = settings["gpu"]
            worker = self.pool.add(gpu["pools"][0], gpu["count"], throttled=self.faults.claim_throttle())
            if not worker.throttled:
                self.pool.place(worker, self._cold_start(settings, worker))
            live.append(worker)
        if not self.faults.throttling:
            for worker in [w for w in live if w.throttled]:
                self.pool.place(worker, self._cold_start(settings, worker))
        floor = max(limits["min"], target)
        idle = sorted((w for w in live if w.idle_for(now) >= limits["idleTimeout"]), key=lambda w: -w.slot)
        for worker in idle[: max(0, len(live) - floor)]:
            self.pool.stop(worker, self.stop_grace_s)

    def _shrink_to(self, size: int, live: list[Worker]) -> None:
        """Stop workers that hold no job while there are more than ``size`` (workers.max was lowered)."""
        spare = sorted((w for w in live if w.state != RUNNING), key=lambda w: _STOP_ORDER.get(w.state, 2))
        for worker in spare[: max(0, len(live) - size)]:
            self.pool.stop(worker, self.stop_grace_s)

    def _cold_start(self, settings: dict[str, Any], worker: Worker) -> float:
        flash = settings["flashboot"] == "FLASHBOOT" and worker.slot in self.pool.ran_slots
        return self.flashboot_cold_start_s if flash else self.cold_start_s
