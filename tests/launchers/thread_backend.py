"""A backend that runs each job's function in a thread of the test process: a real ``Backend``, fast."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from launchers.backend import Backend, JobHandle
from launchers.hydra_job import JobSpec

Task = Callable[[JobSpec, threading.Event], Any]


class ThreadHandle(JobHandle):
    """A job running ``task(spec, cancelled)`` in a thread; ``cost_usd`` mimics a paid backend's handles."""

    def __init__(
        self, spec: JobSpec, future: Future[Any], cancelled: threading.Event, cost_usd: float | None
    ):
        self.spec = spec
        self._future = future
        self._cancelled = cancelled
        if cost_usd is not None:
            self.cost_usd = cost_usd

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> JobReturn:
        ret = JobReturn(
            overrides=self.spec.overrides,
            cfg=self.spec.config,
            hydra_cfg=self.spec.config.hydra,
            task_name="thread",
            status=JobStatus.COMPLETED,
        )
        try:
            ret.return_value = self._future.result()
        except Exception as exc:
            ret.return_value, ret.status = exc, JobStatus.FAILED
        return ret

    def cancel(self) -> None:
        self._cancelled.set()


class ThreadBackend(Backend):
    """Runs ``task(spec, cancelled)`` for every job in its own thread, recording which jobs it ran."""

    def __init__(self, task: Task, cost_usd: float | None = None) -> None:
        self.task = task
        self.cost_usd = cost_usd
        self.submitted: list[JobSpec] = []
        self.closed = False
        self._pool = ThreadPoolExecutor(max_workers=16)

    def submit(self, spec: JobSpec, slot: int) -> ThreadHandle:
        self.submitted.append(spec)
        cancelled = threading.Event()
        return ThreadHandle(spec, self._pool.submit(self.task, spec, cancelled), cancelled, self.cost_usd)

    def close(self) -> None:
        self.closed = True
