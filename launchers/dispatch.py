"""Jobs in flight on one backend: worker slots, start and finish lines, cancel-and-wait on interruption."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from hpo.core import interrupts
from hpo.core.errors import HPOError
from launchers.backend import Backend, JobHandle
from launchers.hydra_job import JobSpec, failed_return

log = logging.getLogger(__name__)

# how long cancelled jobs get to stop before the interruption propagates
CANCEL_GRACE_S = 15.0


class Job:
    """A submitted job: its spec, the backend's handle, the worker slot it holds and when it started."""

    def __init__(self, spec: JobSpec, handle: JobHandle, slot: int) -> None:
        self.spec = spec
        self.handle = handle
        self.slot = slot
        self.started = time.monotonic()

    @property
    def num(self) -> int:
        return self.spec.num

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def done(self) -> bool:
        """Whether the job has stopped; never blocks."""
        return self.handle.done()


class InFlight:
    """The jobs in flight on one backend, never more than ``slots``, each holding its own slot.

    The blocking ``run_jobs`` and the asynchronous sweeper both keep their jobs here.
    """

    def __init__(self, backend: Backend, slots: int, poll_interval_s: float) -> None:
        self.backend = backend
        self.poll_interval_s = poll_interval_s
        self._free = list(range(slots))
        self._running: dict[int, Job] = {}

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def running(self) -> list[Job]:
        return list(self._running.values())

    def start(self, spec: JobSpec, attach: tuple[str, str | None] | None = None) -> Job:
        """Submit ``spec`` in a free slot; with ``attach=(job_id, run_id)`` and a backend that can, follow the
        job an earlier driver submitted instead."""
        assert self._free, "start() needs a free slot"
        slot = self._free.pop(0)
        label = "resume" if attach else "start"
        log.info(f"#{spec.num} {label}: {' '.join(filter_overrides(spec.overrides))}")
        try:
            followed = self.backend.attach(spec, *attach) if attach else None
            handle = followed or self.backend.submit(spec, slot)
        except BaseException:
            self._free.insert(0, slot)
            raise
        job = self._running[spec.num] = Job(spec, handle, slot)
        return job

    def finished(self) -> list[Job]:
        """The running jobs that have stopped since the last call; collect each of them."""
        return [job for job in self._running.values() if job.done()]

    def collect(self, job: Job) -> JobReturn:
        """The stopped ``job``'s return (a failed one when it ended without one); frees its slot."""
        del self._running[job.num]
        self._free.append(job.slot)
        try:
            ret = job.handle.result()
        except HPOError as exc:
            ret = failed_return(job.spec, exc)
        if ret.status == JobStatus.COMPLETED:
            log.info(f"#{job.num} done in {job.elapsed_s:.1f}s: {ret._return_value}")
        elif job.handle.optuna_state == "PRUNED":
            log.info(f"#{job.num} stopped after {job.elapsed_s:.1f}s: {ret._return_value}")
        else:
            log.warning(f"#{job.num} failed after {job.elapsed_s:.1f}s: {ret._return_value}")
        return ret

    def cancel_all(self) -> None:
        """Cancel every running job, then give them a moment to record how they ended, so nothing is reported
        before it is true."""
        jobs = list(self._running.values())
        for job in jobs:
            log.warning(f"#{job.num} cancelled")
            job.handle.cancel()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while any(not job.done() for job in jobs) and time.monotonic() < deadline:
            time.sleep(self.poll_interval_s)
        for job in jobs:
            self._free.append(job.slot)
        self._running.clear()

    def wait(self) -> None:
        """Sleep one poll interval, or, where the backend can tell, until a running job stops."""
        with interrupts.interruptible():
            if not (self._running and self.backend.wait([job.handle for job in self._running.values()])):
                time.sleep(self.poll_interval_s)


def run_jobs(flight: InFlight, specs: Sequence[JobSpec]) -> list[JobReturn]:
    """Run every job, never more than ``workers`` at once, starting the next as soon as one ends.

    On any interruption (Ctrl-C included) the jobs still running are cancelled before it propagates; a
    signal takes effect between two steps, never half-way through starting or collecting a job.
    """
    pending = deque(specs)
    returns: dict[int, JobReturn] = {}
    with interrupts.deferred():
        try:
            while pending or flight.running:
                interrupts.check()
                while pending and flight.free_slots:
                    flight.start(pending.popleft())
                finished = flight.finished()
                for job in finished:
                    returns[job.num] = flight.collect(job)
                if not finished:
                    flight.wait()
        except BaseException:
            flight.cancel_all()
            raise
    return [returns[spec.num] for spec in specs]
