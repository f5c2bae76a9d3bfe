"""The interface every launcher backend implements: submit a job, poll it, collect or cancel it.

Backends and their handles subclass these protocols, so the features a backend lacks keep the defaults
declared here and the sweeper never has to ask whether a backend has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from hydra.core.utils import JobReturn

from hpo.core.errors import HPOError
from launchers.hydra_job import JobSpec


class JobHandle(Protocol):
    """A submitted job, and what its backend can tell of it while it runs."""

    # the trial's last finished epoch, as it reported it (``hpo.core.trial_channel.Progress``): epoch
    # (1-based), epochs, objective (the monitored validation accuracy) and more (None: none reported yet)
    progress: dict[str, Any] | None = None
    # the backend's id for the job, once it has one (a job that outlives the driver is followed by it)
    job_id: str | None = None
    # the trial's MLflow run, and the Optuna state the job tagged it with, once known
    run_id: str | None = None
    optuna_state: str | None = None
    # resubmissions after infrastructure failures, and the estimated cost so far (USD)
    retries: int = 0
    cost_usd: float | None = None

    def done(self) -> bool:
        """Whether the job has stopped, successfully or not; never blocks."""
        ...

    def result(self) -> JobReturn:
        """The job's return; raises an ``hpo.core.errors.HPOError`` when the job ended without one."""
        ...

    def cancel(self) -> None:
        """Stop the job if it still runs."""
        ...

    def prune(self) -> None:
        """Stop the job's trial at its next batch because the study pruned it, keeping its worker; the job
        then comes back as usual (a failed return carrying the stop, or a completed one if it ended
        first). A backend that cannot stop a trial gently cancels the job."""
        self.cancel()


class Backend(Protocol):
    """Runs jobs somewhere: local subprocesses or remote workers."""

    # jobs kept submitted beyond the workers, waiting in the backend's own queue for the next free worker
    queue_ahead: int = 0

    def submit(self, spec: JobSpec, slot: int) -> JobHandle:
        """Start one job in worker slot ``slot`` (0 .. workers-1, free when called) and return at once."""
        ...

    def attach(self, spec: JobSpec, job_id: str, run_id: str | None) -> JobHandle | None:
        """Follow the job ``job_id`` an earlier driver submitted (its trial's MLflow run is ``run_id``) when
        a study resumes; None where jobs do not outlive their driver, and the job is submitted anew."""
        return None

    def wait(self, handles: Sequence[JobHandle]) -> bool:
        """Block until one of ``handles`` may have stopped (or for as long as nothing else can change);
        False at once where the backend cannot tell, and the caller polls instead."""
        return False

    def spent_usd(self) -> float | None:
        """USD the backend's machines have billed so far, idle time included; None where it knows no price."""
        return None

    def cost_report(self) -> dict[str, float] | None:
        """The sweep's cost (``cost_usd`` and its parts, in USD), or None where the backend knows no price."""
        return None

    def close(self) -> None:
        """Stop whatever the backend keeps running beside the jobs, once the sweep has ended."""
        return None


def settled(outcome: JobReturn | HPOError | None) -> JobReturn:
    """A stopped job's return, as ``JobHandle.result`` gives it: the error it ended with is raised."""
    assert outcome is not None, "result() is asked only once done() is true"
    if isinstance(outcome, HPOError):
        raise outcome
    return outcome
