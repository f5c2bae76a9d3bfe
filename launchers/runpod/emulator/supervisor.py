"""The supervisor ties jobs to worker processes: it enforces timeouts, stops workers and fails lost jobs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launchers.runpod.emulator import protocol
from launchers.runpod.emulator.faults import FaultInjector, Faults
from launchers.runpod.emulator.jobs import KEEP, NO_OUTPUT, Job, JobStore
from launchers.runpod.emulator.protocol import CANCELLED, COMPLETED, FAILED, IN_PROGRESS, TIMED_OUT
from launchers.runpod.emulator.workers import Worker, WorkerPool, describe_exit, log_tail

log = logging.getLogger("launchers.runpod.emulator")


@dataclass
class Config:
    """What one emulator serves: the endpoint, its key, its workers and its faults."""

    api_key: str
    workers: int = 1
    endpoint_id: str = "local"
    worker_command: Sequence[str] = (sys.executable, "-m", "worker")
    log_dir: Path = Path(".")
    execution_timeout_s: float = protocol.DEFAULT_EXECUTION_TIMEOUT_MS / 1000
    poll_hold_s: float = protocol.POLL_HOLD_S
    faults: Faults = field(default_factory=Faults)


class StartupError(RuntimeError):
    """The workers did not come up: one ended before polling, or they took too long."""


class Supervisor:
    """The emulated endpoint's control plane: the job store, the worker pool and the fault injector."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = JobStore()
        self.faults = FaultInjector(config.faults)
        self.base_url = ""
        self.pool = WorkerPool(
            config.workers, config.worker_command, self._worker_env, config.log_dir, self._worker_exited
        )
        self.progress_updates = 0
        self.ignored_results = 0
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._kill_on_progress: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def start(self, base_url: str) -> None:
        self.base_url = base_url
        await self.pool.start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until every worker has polled for a job; StartupError if one ends first or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.pool.ready():
            if self.pool.early_exits:
                first = self.pool.early_exits[0]
                raise StartupError(f"{first}; its last lines:\n{log_tail(Path(first.rsplit(' ', 1)[-1]))}")
            if loop.time() > deadline:
                raise StartupError(
                    f"{len(self.pool.workers)} of {self.config.workers} workers were not polling after "
                    f"{timeout_s:g} s; their logs are in {self.config.log_dir}"
                )
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.closed.set()
        self.store.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for handles in self._timers.values():
            for handle in handles:
                handle.cancel()
        await self.pool.close()

    def submit(self, body: dict[str, Any], source: str) -> Job:
        """Queue a request body's job under its policy; ValueError says what is wrong with the body."""
        if not isinstance(body, dict) or "input" not in body:
            raise ValueError('the request body must be a JSON object with an "input" key')
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise ValueError("policy must be a JSON object")
        timeout_ms = _policy_ms(policy, "executionTimeout", self.config.execution_timeout_s * 1000)
        if "executionTimeout" in policy and timeout_ms <= protocol.MIN_EXECUTION_TIMEOUT_MS:
            raise ValueError(f"policy.executionTimeout must be > {protocol.MIN_EXECUTION_TIMEOUT_MS} ms")
        ttl_ms = _policy_ms(policy, "ttl", protocol.DEFAULT_TTL_MS)
        low, high = protocol.TTL_RANGE_MS
        if not low <= ttl_ms <= high:
            raise ValueError(f"policy.ttl must be between {low} and {high} ms")
        job = self.store.submit(
            body["input"],
            source,
            timeout_ms / 1000,
            ttl_ms / 1000,
            webhook=body.get("webhook"),
            s3Config=body.get("s3Config"),
        )
        log.info("job %s queued (/%s)", job.id, source)
        return job

    async def take(self, worker_id: str, batch_size: int = 1) -> list[Job]:
        """Jobs for a polling worker, oldest first, held open up to the poll hold; empty if none came."""
        worker = self.pool.by_id(worker_id)
        if worker is None or worker.retiring:
            # not one of ours (or on its way out): hold the poll anyway, as the SDK re-polls at once on 204
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), self.config.poll_hold_s)
            return []
        worker.polled = True
        job = await self.store.take(worker_id, self.config.poll_hold_s, lambda: self._wants_jobs(worker))
        jobs = [job] if job else []
        while jobs and len(jobs) < batch_size and (extra := self.store.grab(worker_id)) is not None:
            jobs.append(extra)
        for job in jobs:
            self._started(job, worker)
        return jobs

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
        """Cancel a job; one in progress has its worker killed and replaced so that nothing keeps running."""
        if job.status == IN_PROGRESS:
            self._end(job, CANCELLED, stop_worker=True)
        elif not job.final:
            self.store.finish(job, CANCELLED)
            log.info("job %s cancelled in the queue", job.id)

    def time_out(self, job: Job, why: str) -> None:
        if job.status == IN_PROGRESS:
            self._end(job, TIMED_OUT, error=why, stop_worker=True)

    def late(self, job: Job | None, worker_id: str) -> bool:
        """Whether a worker's post is for a job it no longer holds (cancelled, timed out, reassigned)."""
        if job is not None and job.status == IN_PROGRESS and job.worker_id == worker_id:
            return False
        self.ignored_results += 1
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint_id": self.config.endpoint_id,
            "jobs": self.store.by_state(),
            "jobs_total": dict(self.store.totals),
            "retried": self.store.retried,
            "progress_updates": self.progress_updates,
            "ignored_results": self.ignored_results,
            "worker_restarts": self.pool.restarts,
            "worker_pids": sorted(w.pid for w in self.pool.workers.values()),
            "retired_worker_pids": list(self.pool.retired_pids),
            "workers": {
                w.id: {"pid": w.pid, "state": w.state, "job_ids": sorted(w.job_ids), "log": str(w.log_path)}
                for w in sorted(self.pool.workers.values(), key=lambda w: w.slot)
            },
            "log_dir": str(self.config.log_dir),
            **self.faults.snapshot(),
        }

    def _worker_env(self, worker_id: str) -> dict[str, str]:
        """The emulator's environment with RunPod's worker variables, less the client's own API key."""
        env = {**protocol.WORKER_ENV_DEFAULTS, **os.environ}
        env.pop("RUNPOD_API_KEY", None)  # a real worker only gets RUNPOD_AI_API_KEY
        env.update(
            protocol.worker_env(self.base_url, self.config.endpoint_id, worker_id, self.config.api_key)
        )
        return env

    def _wants_jobs(self, worker: Worker) -> bool:
        return self.pool.workers.get(worker.slot) is worker and not worker.retiring and not self.store.closing

    def _started(self, job: Job, worker: Worker) -> None:
        worker.job_ids.add(job.id)
        log.info("job %s taken by worker %s", job.id, worker.id)
        loop = asyncio.get_running_loop()
        limit = min(job.execution_timeout_s, job.ttl_s - (job.started or 0) + job.created)
        why = f"job exceeded its execution timeout of {job.execution_timeout_s:g} s"
        if self.faults.claim_timeout():
            limit = self.faults.faults.timeout_after_s
            why = f"job timed out after {limit:g} s (fault injected by the emulator)"
        timers = [loop.call_later(max(limit, 0.0), self.time_out, job, why)]
        if self.faults.claim_kill():
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
        self,
        job: Job,
        status: str,
        *,
        output: Any = KEEP,
        error: str | None = None,
        stop_worker: bool = False,
    ) -> None:
        if not self.store.finish(job, status, output=output, error=error):
            return
        for handle in self._timers.pop(job.id, []):
            handle.cancel()
        self._kill_on_progress.discard(job.id)
        log.info("job %s %s%s", job.id, status, f": {error.splitlines()[0][:200]}" if error else "")
        worker = self.pool.by_id(job.worker_id or "")
        if worker is not None and job.id in worker.job_ids:
            worker.job_ids.discard(job.id)
            if stop_worker:
                log.info(
                    "stopping worker %s (pid %d), which was running job %s", worker.id, worker.pid, job.id
                )
                self.pool.kill(worker, expected=True)

    def _worker_exited(self, worker: Worker, code: int) -> None:
        log.info("worker %s (pid %d) %s", worker.id, worker.pid, describe_exit(code))
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


def _policy_ms(policy: dict[str, Any], key: str, default: float) -> float:
    value = policy.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"policy.{key} must be a positive number of milliseconds, not {value!r}")
    return float(value)
