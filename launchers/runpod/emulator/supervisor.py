"""The supervisor ties jobs to workers: it enforces timeouts, signals per-job stops and fails lost jobs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from launchers.runpod.emulator import protocol
from launchers.runpod.emulator.billing import bill
from launchers.runpod.emulator.endpoints import Record, Registry, now_iso
from launchers.runpod.emulator.faults import FaultInjector, Faults
from launchers.runpod.emulator.jobs import KEEP, NO_OUTPUT, Job, JobStore
from launchers.runpod.emulator.limits import WINDOW_S, RateLimiter
from launchers.runpod.emulator.protocol import CANCELLED, COMPLETED, FAILED, IN_PROGRESS, TIMED_OUT
from launchers.runpod.emulator.scaler import Scaler
from launchers.runpod.emulator.stops import StopLedger
from launchers.runpod.emulator.workers import Worker, WorkerPool, describe_exit, log_tail

log = logging.getLogger("launchers.runpod.emulator")
_SCALE_TICK_S = 0.05


@dataclass
class Config:
    """What one emulator serves: the endpoint, its key, its workers, its scaling and its faults."""

    api_key: str
    workers: int = 1  # workers.max
    workers_min: int | None = None  # None: as many as workers (always warm)
    idle_timeout_s: int = 5
    cold_start_s: float = 0.0
    flashboot_cold_start_s: float | None = None  # None: cold_start_s / 5
    gpu_count: int = 1
    gpu_pool: str = "ADA_24"
    endpoint_id: str = "local"
    endpoint_name: str = "hpo-emulator"
    worker_command: Sequence[str] = (sys.executable, "-m", "worker")
    log_dir: Path = Path(".")
    execution_timeout_s: float = protocol.DEFAULT_EXECUTION_TIMEOUT_MS / 1000
    poll_hold_s: float = protocol.POLL_HOLD_S
    rate_limit_window_s: float = WINDOW_S
    rate_limit_scale: float = 1.0
    faults: Faults = field(default_factory=Faults)

    def endpoint(self) -> Record:
        """The live endpoint's initial REST record."""
        return {
            "id": self.endpoint_id,
            "name": self.endpoint_name,
            "type": "QUEUE",
            "templateId": None,
            "image": shlex.join(self.worker_command),
            "env": {},
            "disk": 20,
            "gpu": {"pools": [self.gpu_pool], "count": self.gpu_count, "minCudaVersion": "12.5"},
            "workers": {
                "min": self.workers if self.workers_min is None else self.workers_min,
                "max": self.workers,
                "idleTimeout": self.idle_timeout_s,
            },
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
            "flashboot": "FLASHBOOT",
            "networkVolumes": [],
            "timeout": round(self.execution_timeout_s * 1000),
            "createdAt": now_iso(),
        }


class StartupError(RuntimeError):
    """The workers did not come up: one ended before polling, or they took too long."""


class Supervisor:
    """The emulated endpoint's control plane: jobs, workers, the scaler, billing, stops and faults."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.origin = time.monotonic()
        self.registry = Registry(config.endpoint())
        self.store = JobStore()
        self.faults = FaultInjector(config.faults)
        self.limiter = RateLimiter(config.rate_limit_window_s, config.rate_limit_scale)
        self.stops = StopLedger(self.origin)
        self.base_url = ""
        self.pool = WorkerPool(config.worker_command, self._worker_env, config.log_dir, self._worker_exited)
        flash = (
            config.cold_start_s / 5
            if config.flashboot_cold_start_s is None
            else config.flashboot_cold_start_s
        )
        self.scaler = Scaler(self.pool, self.faults, lambda: self.settings, config.cold_start_s, flash)
        self.progress_updates = 0
        self.ignored_results = 0
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._kill_on_progress: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()

    @property
    def settings(self) -> Record:
        """The live endpoint's settings, changed at once by a REST PATCH."""
        return self.registry.live

    async def start(self, base_url: str) -> None:
        self.base_url = base_url
        self._loops = [asyncio.create_task(self._sweep()), asyncio.create_task(self._scale())]

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until workers.min workers have polled; StartupError if one ends first or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        limits = self.settings["workers"]
        wanted = min(limits["min"], limits["max"])
        while sum(w.polled for w in self.pool.live()) < wanted:
            if self.pool.early_exits:
                first = self.pool.early_exits[0]
                raise StartupError(f"{first}; its last lines:\n{log_tail(Path(first.rsplit(' ', 1)[-1]))}")
            if loop.time() > deadline:
                missing = wanted - sum(w.polled for w in self.pool.live())
                raise StartupError(
                    f"{missing} of {wanted} workers were not polling after {timeout_s:g} s; "
                    f"their logs are in {self.config.log_dir}"
                )
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.closed.set()
        self.store.close()
        for task in self._loops:
            task.cancel()
        for handles in self._timers.values():
            for handle in handles:
                handle.cancel()
        await self.pool.close()
        self.stops.exited(self.pool.ended, time.monotonic())

    def submit(self, body: dict[str, Any], source: str) -> Job:
        """Queue a request body's job under its policy; ValueError says what is wrong with the body."""
        if not isinstance(body, dict) or "input" not in body:
            raise ValueError('the request body must be a JSON object with an "input" key')
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise ValueError("policy must be a JSON object")
        timeout_ms = _policy_ms(policy, "executionTimeout", self.settings["timeout"])
        if "executionTimeout" in policy and timeout_ms <= protocol.MIN_EXECUTION_TIMEOUT_MS:
            raise ValueError(f"policy.executionTimeout must be > {protocol.MIN_EXECUTION_TIMEOUT_MS} ms")
        ttl_ms = _policy_ms(policy, "ttl", protocol.DEFAULT_TTL_MS)
        low, high = protocol.TTL_RANGE_MS
        if not low <= ttl_ms <= high:
            raise ValueError(f"policy.ttl must be between {low} and {high} ms")
        low_priority = policy.get("lowPriority", False)
        if not isinstance(low_priority, bool):
            raise ValueError("policy.lowPriority must be true or false")
        job = self.store.submit(
            body["input"],
            source,
            timeout_ms / 1000,
            ttl_ms / 1000,
            low_priority,
            webhook=body.get("webhook"),
            s3Config=body.get("s3Config"),
        )
        log.info("job %s queued (/%s)", job.id, source)
        return job

    async def take(self, worker_id: str, batch_size: int = 1, holds_jobs: bool = True) -> list[Job]:
        """Jobs for a polling worker, oldest first, held open up to the poll hold; empty if none came."""
        worker = self.pool.by_id(worker_id)
        if worker is None or worker.retiring:
            # not one of ours (or on its way out): hold the poll anyway, as the SDK re-polls at once on 204
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), self.config.poll_hold_s)
            return []
        if not worker.polled:
            worker.polled, worker.idle_since = True, time.monotonic()
        if not holds_jobs:
            worker.pinged(set())
            self.stops.released(worker, set(), time.monotonic())
        taking = asyncio.ensure_future(
            self.store.take(worker_id, self.config.poll_hold_s, lambda: self._wants_jobs(worker))
        )
        gone = asyncio.ensure_future(worker.gone.wait())
        await asyncio.wait({taking, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not taking.done():
            taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking
            return []
        job = taking.result()
        jobs = [job] if job else []
        while jobs and len(jobs) < batch_size and (extra := self.store.grab(worker_id)) is not None:
            jobs.append(extra)
        for job in jobs:
            self._started(job, worker)
        return jobs

    async def stop_signals(self, worker_id: str) -> list[str]:
        """The job ids to stop for a worker's job-stop long-poll; empty after the poll hold."""
        worker = self.pool.by_id(worker_id)
        if worker is not None and not worker.pending_stops:
            worker.stop_signal.clear()
            closed = asyncio.ensure_future(self.closed.wait())
            signalled = asyncio.ensure_future(worker.stop_signal.wait())
            gone = asyncio.ensure_future(worker.gone.wait())
            waits = {closed, signalled, gone}
            await asyncio.wait(waits, timeout=self.config.poll_hold_s, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        elif worker is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), self.config.poll_hold_s)
        if worker is None or not worker.pending_stops:
            return []
        job_ids, worker.pending_stops = worker.pending_stops, []
        self.stops.delivered(job_ids, time.monotonic())
        log.info("stop of job(s) %s delivered to worker %s", ", ".join(job_ids), worker.id)
        return job_ids

    def pinged(self, worker_id: str, job_ids: set[str]) -> None:
        """A worker's heartbeat listing the jobs it still holds."""
        worker = self.pool.by_id(worker_id)
        if worker is not None:
            now = time.monotonic()
            worker.pinged(job_ids)
            self.stops.released(worker, job_ids, now)
            again = [
                j for j in self.stops.unheeded(worker, job_ids, now, 1.0) if j not in worker.pending_stops
            ]
            if again:
                worker.pending_stops.extend(again)
                worker.stop_signal.set()

    def progress(self, job: Job, output: Any) -> None:
        self.progress_updates += 1
        self.store.progress(job, output)
        if job.id in self._kill_on_progress:
            self._kill_for_fault(job)

    def complete(self, job: Job, result: dict[str, Any]) -> None:
        """Take a worker's final result: FAILED when it carries an error, else COMPLETED."""
        error = result.get("error")
        output = result.get("output", NO_OUTPUT)
        if error:
            self._end(
                job, FAILED, output=output, error=error if isinstance(error, str) else json.dumps(error)
            )
        else:
            self._end(job, COMPLETED, output=output)
        if result.get("stopPod") and (worker := self.pool.by_id(job.worker_id or "")) is not None:
            asyncio.get_running_loop().call_later(
                0.2, functools.partial(self.pool.kill, worker, expected=True)
            )

    def fail(self, job: Job, error: str, output: Any = KEEP) -> None:
        self._end(job, FAILED, output=output, error=error)

    def cancel(self, job: Job) -> None:
        """Cancel a job; one in progress is CANCELLED at once and its worker told to stop it."""
        if job.status == IN_PROGRESS:
            self._end(job, CANCELLED, stop_job=True)
        elif not job.final:
            self.store.finish(job, CANCELLED)
            log.info("job %s cancelled in the queue", job.id)

    def time_out(self, job: Job, why: str) -> None:
        if job.status == IN_PROGRESS:
            self._end(job, TIMED_OUT, error=why, stop_job=True)

    def late(self, job: Job | None, worker_id: str) -> bool:
        """Whether a worker's post is for a job it no longer holds (cancelled, timed out, reassigned)."""
        if job is not None and job.status == IN_PROGRESS and job.worker_id == worker_id:
            return False
        self.ignored_results += 1
        return True

    def billing(self) -> dict[str, Any]:
        return bill([*self.pool.ended, *self.pool.workers.values()], time.monotonic(), self.origin)

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        workers = sorted(self.pool.workers.values(), key=lambda w: w.slot)
        billed = [w for w in workers if w.stopped is None]
        return {
            "endpoint_id": self.config.endpoint_id,
            "endpoint": self.settings,
            "jobs": self.store.by_state(),
            "jobs_total": dict(self.store.totals),
            "retried": self.store.retried,
            "progress_updates": self.progress_updates,
            "ignored_results": self.ignored_results,
            "worker_restarts": self.pool.restarts,
            "worker_pids": sorted(w.pid for w in workers if w.process is not None),
            "retired_worker_pids": list(self.pool.retired_pids),
            "workers": {
                w.id: {
                    "pid": w.pid or None,
                    "state": w.state.lower(),
                    "job_ids": sorted(w.job_ids),
                    "idle_s": round(w.idle_for(now), 3),
                    "log": str(w.log_path),
                }
                for w in billed
            },
            "stops": self.stops.snapshot(),
            "job_log": self.store.timeline(self.origin),
            "billing": self.billing(),
            "log_dir": str(self.config.log_dir),
            **self.faults.snapshot(),
        }

    def _worker_env(self, worker: Worker) -> dict[str, str]:
        """The emulator's environment with the endpoint's and RunPod's worker variables, less the API key."""
        env = {**protocol.WORKER_ENV_DEFAULTS, **os.environ, **self.settings["env"]}
        env.pop("RUNPOD_API_KEY", None)  # a real worker only gets RUNPOD_AI_API_KEY
        env.update(
            protocol.worker_env(self.base_url, self.config.endpoint_id, worker.id, self.config.api_key)
        )
        env["RUNPOD_GPU_COUNT"] = str(worker.gpu_count)
        return env

    def _wants_jobs(self, worker: Worker) -> bool:
        return self.pool.workers.get(worker.id) is worker and not worker.retiring and not self.store.closing

    def _started(self, job: Job, worker: Worker) -> None:
        worker.took(job.id)
        log.info("job %s taken by worker %s", job.id, worker.id)
        loop = asyncio.get_running_loop()
        limit = min(job.execution_timeout_s, job.ttl_s - (job.started or 0) + job.created)
        why = f"job exceeded its execution timeout of {job.execution_timeout_s:g} s"
        # one injected fault per job, so that each one a test asks for happens
        timing_out = self.faults.claim_timeout()
        if timing_out:
            limit = self.faults.faults.timeout_after_s
            why = f"job timed out after {limit:g} s (fault injected by the emulator)"
        timers = [loop.call_later(max(limit, 0.0), self.time_out, job, why)]
        if not timing_out and self.faults.claim_kill():
            self._kill_on_progress.add(job.id)
            timers.append(loop.call_later(self.faults.faults.kill_after_s, self._kill_for_fault, job))
        self._timers[job.id] = timers

    def _kill_for_fault(self, job: Job) -> None:
        self._kill_on_progress.discard(job.id)
        worker = self.pool.by_id(job.worker_id or "")
        if job.status == IN_PROGRESS and worker is not None and job.id in worker.job_ids:
            log.info("fault: killing worker %s (pid %d) running job %s", worker.id, worker.pid, job.id)
            self.pool.kill(worker, expected=False)

    def _end(
        self, job: Job, status: str, *, output: Any = KEEP, error: str | None = None, stop_job: bool = False
    ) -> None:
        if not self.store.finish(job, status, output=output, error=error):
            return
        for handle in self._timers.pop(job.id, []):
            handle.cancel()
        self._kill_on_progress.discard(job.id)
        log.info("job %s %s%s", job.id, status, f": {error.splitlines()[0][:200]}" if error else "")
        worker = self.pool.by_id(job.worker_id or "")
        if worker is not None and job.id in worker.job_ids:
            worker.dropped(job.id)
            if stop_job:
                worker.pending_stops.append(job.id)
                worker.stop_signal.set()
                self.stops.signalled(job.id, worker.id, time.monotonic())

    def _worker_exited(self, worker: Worker, code: int) -> None:
        log.info("worker %s (pid %d) %s", worker.id, worker.pid, describe_exit(code))
        self.stops.exited([worker], time.monotonic())
        for job_id in sorted(worker.job_ids):
            job = self.store.get(job_id)
            if job is not None and job.status == IN_PROGRESS and job.worker_id == worker.id:
                self.fail(
                    job,
                    f"worker lost: worker {worker.id} (pid {worker.pid}) {describe_exit(code)} while running "
                    f"the job; its log is {worker.log_path}",
                )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for job in self.store.expire():
                log.info("job %s TIMED_OUT in the queue", job.id)

    async def _scale(self) -> None:
        while True:
            if not self.pool.closing:
                self.scaler.tick(self.store.jobs.values())
            await asyncio.sleep(_SCALE_TICK_S)


def _policy_ms(policy: dict[str, Any], key: str, default: float) -> float:
    value = policy.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"policy.{key} must be a positive number of milliseconds, not {value!r}")
    return float(value)


SUPERVISOR = web.AppKey("supervisor", Supervisor)
