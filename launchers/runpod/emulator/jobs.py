"""The job store: RunPod's job state machine, its FIFO queue and the counts that ``/health`` reports."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from launchers.runpod.emulator.protocol import (
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL_STATES,
    IN_PROGRESS,
    IN_QUEUE,
    RESULT_RETENTION_S,
    STATES,
    TIMED_OUT,
)

NO_OUTPUT: Any = object()  # a job without an ``output`` key
KEEP: Any = object()  # finish(): leave the output as it is


@dataclass
class Job:
    """One request: its input, its policy and where it stands, as ``/status`` reports it."""

    id: str
    input: Any
    source: str  # "run" or "runsync": which payload limit and result retention apply
    execution_timeout_s: float
    ttl_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # webhook, s3Config: passed on to the worker
    low_priority: bool = False  # policy.lowPriority: never makes the endpoint scale up
    created: float = field(default_factory=time.monotonic)
    queued: float = field(default_factory=time.monotonic)
    status: str = IN_QUEUE
    worker_id: str | None = None
    started: float | None = None
    finished: float | None = None
    output: Any = NO_OUTPUT
    error: str | None = None
    retries: int = 0
    stream: list[Any] = field(default_factory=list)
    stream_sent: int = 0
    expires: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    def status_json(self) -> dict[str, Any]:
        """The job as RunPod's ``/status`` shows it: times in ms, the output (or progress) and any error."""
        now = time.monotonic()
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        left_queue = self.started if self.started is not None else self.finished
        if left_queue is not None:
            body["delayTime"] = round((left_queue - self.queued) * 1000)
        if self.started is not None:
            body["executionTime"] = round(((self.finished or now) - self.started) * 1000)
        if self.worker_id is not None:
            body["workerId"] = self.worker_id
        if self.output is not NO_OUTPUT:
            body["output"] = self.output
        if self.error is not None:
            body["error"] = self.error
        if self.retries:
            body["retries"] = self.retries
        return dict(sorted(body.items()))

    def worker_payload(self) -> dict[str, Any]:
        """The job as a worker's job-take receives it."""
        return {"id": self.id, "input": self.input, **self.extra}


class JobStore:
    """Every job the endpoint knows, its FIFO queue of waiting jobs, and the long-polls waiting for one."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._waiters: deque[asyncio.Future[Job | None]] = deque()
        self.closing = False
        self.totals = dict.fromkeys(STATES, 0)
        self.retried = 0

    def submit(
        self,
        job_input: Any,
        source: str,
        execution_timeout_s: float,
        ttl_s: float,
        low_priority: bool = False,
        **extra: Any,
    ) -> Job:
        """Queue a new job and hand it to a waiting worker if one is polling."""
        job_id = f"{'sync-' if source == 'runsync' else ''}{uuid.uuid4()}-e1"
        kept = {k: v for k, v in extra.items() if v}
        job = Job(
            job_id, job_input, source, execution_timeout_s, ttl_s, extra=kept, low_priority=low_priority
        )
        self.jobs[job.id] = job
        self.totals[IN_QUEUE] += 1
        self._queue.append(job.id)
        self._dispatch()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def take(self, worker_id: str, hold_s: float, wanted: Callable[[], bool]) -> Job | None:
        """The oldest waiting job, now IN_PROGRESS on ``worker_id``; None after ``hold_s`` without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        while not self.closing:
            job = self._next_queued()
            if job is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                waiter: asyncio.Future[Job | None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await asyncio.wait({waiter}, timeout=remaining)
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled() and (handed := waiter.result()) is not None:
                        self._queue.appendleft(handed.id)
                    waiter.cancel()
                    raise
                if not waiter.done():
                    waiter.cancel()
                    return None
                job = waiter.result()
                if job is None:
                    continue
            if job.status != IN_QUEUE:
                continue
            if not wanted():
                self._queue.appendleft(job.id)
                self._dispatch()
                return None
            job.status, job.worker_id, job.started = IN_PROGRESS, worker_id, time.monotonic()
            return job
        return None

    def grab(self, worker_id: str) -> Job | None:
        """The oldest waiting job without waiting, for the batch job-take's extra slots."""
        job = self._next_queued()
        if job is not None:
            job.status, job.worker_id, job.started = IN_PROGRESS, worker_id, time.monotonic()
        return job

    def progress(self, job: Job, output: Any) -> None:
        """Record a progress update: RunPod shows it as the job's ``output`` while it is IN_PROGRESS."""
        job.output = output

    def finish(self, job: Job, status: str, *, output: Any = KEEP, error: str | None = None) -> bool:
        """Move a job to a final state once; False when it was final already (a late or duplicate result).

        A worker's result replaces the output; a cancel, timeout or lost worker keeps the last progress.
        """
        if job.final:
            return False
        job.status, job.finished, job.error = status, time.monotonic(), error
        if output is not KEEP:
            job.output = output
        job.expires = job.finished + RESULT_RETENTION_S[job.source]
        self.totals[status] += 1
        job.done.set()
        return True

    def retry(self, job: Job) -> None:
        """Requeue a FAILED or TIMED_OUT job under its id with its input, dropping its previous result."""
        job.status, job.worker_id, job.started, job.finished = IN_QUEUE, None, None, None
        job.output, job.error, job.expires, job.stream, job.stream_sent = NO_OUTPUT, None, None, [], 0
        job.queued = time.monotonic()
        job.retries += 1
        job.done = asyncio.Event()
        self.retried += 1
        self._queue.append(job.id)
        self._dispatch()

    def purge(self) -> int:
        """Cancel every job still waiting in the queue; jobs in progress go on."""
        removed = 0
        while (job := self._next_queued()) is not None:
            self.finish(job, CANCELLED)
            removed += 1
        return removed

    def expire(self) -> list[Job]:
        """Time out queued jobs past their ttl and forget results past their retention; the timed-out jobs."""
        now = time.monotonic()
        timed_out = []
        for job in list(self.jobs.values()):
            if job.status == IN_QUEUE and now - job.created > job.ttl_s:
                self.finish(
                    job, TIMED_OUT, error=f"job expired in the queue after its ttl of {job.ttl_s:g} s"
                )
                timed_out.append(job)
            elif job.expires is not None and now > job.expires:
                del self.jobs[job.id]
        return timed_out

    def close(self) -> None:
        """Release every waiting long-poll, as the endpoint shuts down."""
        self.closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def timeline(self, origin: float) -> list[dict[str, Any]]:
        """Every known job's trial (an hpo payload's ``trial.number``, else None), state and time in progress
        (seconds from ``origin``): what tests read to find two jobs of one trial running at once."""
        rows = []
        for job in self.jobs.values():
            trial = job.input.get("trial") if isinstance(job.input, dict) else None
            rows.append(
                {
                    "id": job.id,
                    "trial": trial.get("number") if isinstance(trial, dict) else None,
                    "status": job.status,
                    "started_s": None if job.started is None else round(job.started - origin, 3),
                    "finished_s": None if job.finished is None else round(job.finished - origin, 3),
                }
            )
        return rows

    def by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for job in self.jobs.values():
            counts[job.status] += 1
        return counts

    def health_jobs(self) -> dict[str, int]:
        """The ``jobs`` part of ``/health``: final counts since start, live counts now."""
        live = self.by_state()
        return {
            "completed": self.totals[COMPLETED],
            "failed": self.totals[FAILED] + self.totals[TIMED_OUT],
            "inProgress": live[IN_PROGRESS],
            "inQueue": live[IN_QUEUE],
            "retried": self.retried,
        }

    def _next_queued(self) -> Job | None:
        while self._queue:
            job = self.jobs.get(self._queue.popleft())
            if job is not None and job.status == IN_QUEUE:
                return job
        return None

    def _dispatch(self) -> None:
        while self._waiters and self._queue:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            job = self._next_queued()
            if job is None:
                self._waiters.appendleft(waiter)
                return
            waiter.set_result(job)
