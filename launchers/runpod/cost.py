"""What a sweep's RunPod workers cost: every second a worker is up is billed, not just its jobs' time.

RunPod bills a serverless worker from its placement (``startedAt``, cold start included) until it stops,
which is its idle timeout after its last job. The meter reads the endpoint's workers every poll interval
(in a daemon thread, so no job handle waits on it) and integrates each worker's time at its GPU's price.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hpo.core.errors import HPOError
from launchers.runpod.rest import RestClient

log = logging.getLogger(__name__)

# worker states of the REST workers list in which the worker is placed and billed, or about to be
LIVE_STATES = ("INITIALIZING", "IDLE", "RUNNING")


@dataclass
class WorkerSpan:
    """One worker's billed span as seen so far (wall-clock seconds since the epoch)."""

    started: float
    last_seen: float
    price_per_hour: float
    ready: float | None = None
    gone: bool = False
    tail_s: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.last_seen - self.started, 0.0) + self.tail_s

    @property
    def cold_start_s(self) -> float:
        return max((self.ready if self.ready is not None else self.last_seen) - self.started, 0.0)


class PriceList:
    """USD per worker-hour: ``launcher.price_per_hour`` where set, else RunPod's serverless catalog price of
    the worker's GPU type (or of the endpoint's first pool) times the GPUs per worker; 0, said once, where
    neither is known."""

    def __init__(
        self, override: float | None, catalog: list[dict[str, Any]] | None, pools: list[str], gpu_count: int
    ) -> None:
        self.override = override
        self.gpu_count = gpu_count
        self.by_type: dict[str, float] = {}
        by_pool: dict[str, float] = {}
        for gpu in catalog or []:
            price = (gpu.get("price") or {}).get("serverless")
            if isinstance(price, int | float):
                self.by_type[str(gpu.get("id"))] = float(price)
                pool = str(gpu.get("pool"))
                # a pool's GPUs may differ in price: the dearest keeps a budget on the safe side
                by_pool[pool] = max(by_pool.get(pool, 0.0), float(price))
        self.pool_price = by_pool.get(pools[0]) if pools else None
        self._unknown_said = catalog is None and override is None
        if self._unknown_said:
            log.warning(
                "RunPod's GPU catalog could not be read and launcher.price_per_hour is not set: costs are "
                "counted at $0 (set hardware.price_per_hour to your GPUs' serverless price)"
            )

    def per_hour(self, gpu_type: str | None = None) -> float:
        if self.override is not None:
            return self.override
        per_gpu = self.by_type.get(gpu_type or "", self.pool_price)
        if per_gpu is None:
            if not self._unknown_said:
                self._unknown_said = True
                log.warning(
                    f"RunPod's GPU catalog has no serverless price for GPU {gpu_type!r} nor the endpoint's "
                    "first pool: costs are counted at $0 (set hardware.price_per_hour)"
                )
            return 0.0
        return per_gpu * self.gpu_count


class CostMeter:
    """Integrates the endpoint's workers' billed time and splits it into execution, cold start and idle."""

    def __init__(
        self,
        rest: RestClient,
        endpoint_id: str,
        prices: PriceList,
        idle_timeout_s: float,
        poll_interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rest = rest
        self.endpoint_id = endpoint_id
        self.prices = prices
        self.idle_timeout_s = idle_timeout_s
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.began = clock()
        self.spans: dict[tuple[str, float], WorkerSpan] = {}
        self.worker_types: dict[str, str] = {}
        self.summary: dict[str, int] = {}
        # since when no worker has been starting or up (None: one is, or the workers were never read)
        self.no_live_since: float | None = None
        self.execution_usd = 0.0
        self._job_ends: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_said = False
        self._finished = False

    def start(self) -> None:
        """Read the workers every poll interval in a daemon thread until ``finish``."""
        self._thread = threading.Thread(target=self._run, name="runpod-cost-meter", daemon=True)
        self._thread.start()

    def poll(self) -> None:
        """Read the workers list once and update every worker's span; a failed read is skipped (said once)."""
        try:
            answer = self.rest.workers(self.endpoint_id)
        except HPOError as exc:
            if not self._failed_said:
                self._failed_said = True
                log.warning(
                    f"RunPod workers of {self.endpoint_id} could not be read ({exc}): costs may be low"
                )
            return
        self.observe(answer.get("workers") or [], answer.get("summary") or {})

    def observe(self, workers: list[dict[str, Any]], summary: dict[str, int]) -> None:
        """Update the spans from one workers list read now."""
        now = self.clock()
        with self._lock:
            seen: set[tuple[str, float]] = set()
            for worker in workers:
                status, gpu_type = str(worker.get("status")), worker.get("gpuTypeId")
                started = _epoch(worker.get("startedAt"))
                if gpu_type:
                    self.worker_types[str(worker["id"])] = str(gpu_type)
                if started is None or status == "THROTTLED":
                    continue
                key = (str(worker["id"]), started)
                seen.add(key)
                span = self.spans.get(key)
                if span is None:
                    price = self.prices.per_hour(str(gpu_type) if gpu_type else None)
                    span = self.spans[key] = WorkerSpan(max(started, self.began), now, price)
                span.last_seen = now
                if span.ready is None and status != "INITIALIZING":
                    span.ready = now
            for key, span in self.spans.items():
                span.gone = span.gone or key not in seen
            self.summary = {k: int(v) for k, v in summary.items() if isinstance(v, int | float)}
            live = any(str(w.get("status")) in LIVE_STATES for w in workers)
            self.no_live_since = None if live else (self.no_live_since or now)

    def price_for(self, worker_id: str | None) -> float:
        """USD per hour of the worker ``worker_id`` (its GPU type's price where known)."""
        return self.prices.per_hour(self.worker_types.get(worker_id or ""))

    def job_ended(self, worker_id: str | None, execution_usd: float) -> None:
        """A job was seen final now: its billed execution, and when its worker last ended a job."""
        with self._lock:
            self.execution_usd += execution_usd
            if worker_id:
                self._job_ends[worker_id] = self.clock()

    def workers_text(self) -> str:
        """The workers by status, as "2 throttled, 1 unhealthy" (or "no workers")."""
        parts = [f"{n} {state}" for state, n in self.summary.items() if state != "total" and n]
        return ", ".join(parts) or "no workers"

    def finish(self) -> None:
        """Stop the thread, read the workers a last time and add the idle tail: each worker still up is billed
        until its idle timeout after its last job ended (now where none is known)."""
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.poll()
        now = self.clock()
        with self._lock:
            for (worker_id, _), span in self.spans.items():
                if not span.gone:
                    idle_from = self._job_ends.get(worker_id, now)
                    span.tail_s = max(idle_from + self.idle_timeout_s - span.last_seen, 0.0)

    def spent_usd(self) -> float:
        """USD billed so far by the endpoint's workers."""
        with self._lock:
            workers = sum(span.seconds * span.price_per_hour for span in self.spans.values()) / 3600
            # jobs on a worker the list never showed (it came and went between two reads) still billed
            return max(workers, self.execution_usd)

    def report(self) -> dict[str, float]:
        """The cost so far (with the idle tail once finished), split into execution, cold start and idle."""
        with self._lock:
            spans = list(self.spans.values())
            execution = self.execution_usd
        total = max(sum(span.seconds * span.price_per_hour for span in spans) / 3600, execution)
        cold = sum(span.cold_start_s * span.price_per_hour for span in spans) / 3600
        seconds = sum(span.seconds for span in spans)
        price = total * 3600 / seconds if seconds else self.prices.per_hour()
        return {
            "cost_usd": total,
            "cost_execution_usd": execution,
            "cost_cold_start_usd": cold,
            "cost_idle_usd": max(total - execution - cold, 0.0),
            "worker_seconds": seconds,
            "price_per_hour": price,
        }

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.poll_interval_s):
                return


def _epoch(stamp: Any) -> float | None:
    """An ISO-8601 UTC time as seconds since the epoch (None for null or garbage)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
