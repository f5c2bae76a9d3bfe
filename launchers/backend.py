"""The interface every launcher backend implements: submit a job, poll it, collect or cancel it."""

from __future__ import annotations

from typing import Protocol

from hydra.core.utils import JobReturn

from launchers.job import JobSpec


class JobHandle(Protocol):
    """A submitted job."""

    def done(self) -> bool:
        """Whether the job has stopped, successfully or not; never blocks."""
        ...

    def result(self) -> JobReturn:
        """The job's return; raises ``hpo.errors.BackendError`` when the job died without one."""
        ...

    def cancel(self) -> None:
        """Stop the job if it still runs."""
        ...


class Backend(Protocol):
    """Runs jobs somewhere: local subprocesses today, remote workers later."""

    def submit(self, spec: JobSpec, slot: int) -> JobHandle:
        """Start one job in worker slot ``slot`` (0 .. workers-1, free when called) and return at once."""
        ...
