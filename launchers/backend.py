"""The interface every launcher backend implements: submit a job, poll it, collect or cancel it."""

from __future__ import annotations

from typing import Protocol

from hydra.core.utils import JobReturn

from launchers.hydra_job import JobSpec


class JobHandle(Protocol):
    """A submitted job.

    A handle may also report ``progress`` (a dict with ``epoch``, ``epochs`` and ``val_accuracy``, or None),
    ``job_id`` (the backend's id for the job, once it has one), ``retries`` and ``cost_usd``; the sweeper
    shows and records whichever it finds.
    """

    def done(self) -> bool:
        """Whether the job has stopped, successfully or not; never blocks."""
        ...

    def result(self) -> JobReturn:
        """The job's return; raises an ``hpo.core.errors.HPOError`` when the job ended without one."""
        ...

    def cancel(self) -> None:
        """Stop the job if it still runs."""
        ...


class Backend(Protocol):
    """Runs jobs somewhere: local subprocesses or remote workers.

    A backend whose jobs outlive the driver may also offer ``attach(spec, job_id, run_id) -> JobHandle``:
    follow the job ``job_id`` an earlier driver submitted (its trial's MLflow run is ``run_id``), used when a
    study resumes; and ``wait(handles)``: block until one of its ``handles`` may have stopped (or for as long
    as nothing else can change), so the sweeper learns of a finished job without polling for it.
    """

    def submit(self, spec: JobSpec, slot: int) -> JobHandle:
        """Start one job in worker slot ``slot`` (0 .. workers-1, free when called) and return at once."""
        ...
