"""One trial on SLURM: its job followed through submitit, resubmitted when the infrastructure lost it.

``done()`` never blocks: a finished job is seen by its result file (submitit writes it before the job
ends), and a job that ended without one by its state, which the backend reads with one ``sacct`` for all
of the sweep's jobs at most every ``launcher.slurm.state_poll_s``. A job cancelled, preempted or lost with
its node (not by this driver) is resubmitted as the same trial, continuing its MLflow run, up to
``launcher.max_retries`` times; a trial whose training raised returns its error like a local one, and is
not retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from hydra.core.utils import JobReturn

from hpo.core.errors import BackendError, HPOError, TrialError
from launchers.backend import JobHandle, settled
from launchers.hydra_job import JobResult, JobSpec
from launchers.slurm.trial_files import TrialFiles
from launchers.slurm.trial_job import latest_run

if TYPE_CHECKING:
    import submitit

    from launchers.slurm.backend import SlurmBackend

log = logging.getLogger(__name__)

# SLURM job states (sacct's first word) after which the infrastructure, not the trial, is to blame
LOST_STATES = frozenset({"CANCELLED", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "REVOKED"})
# states of a job that has ended (a job in any other state may still run)
FINAL_STATES = LOST_STATES | {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "DEADLINE"}
# how long a job SLURM reports ended gets for its result file to appear (a shared FS may lag)
RESULT_GRACE_S = 30.0


class SlurmJobHandle(JobHandle):
    """A trial's SLURM job; ``job_id`` is the trial's job folder (its jobs are sub-folders named by their
    SLURM ids), so that a new driver re-attaches to the trial's latest job whatever its sweep directory.
    ``progress`` is read from the trial's progress file at each poll."""

    def __init__(self, backend: SlurmBackend, spec: JobSpec, job: submitit.Job[JobResult]) -> None:
        self._backend = backend
        self._spec = spec
        self._job = job
        self.job_id: str | None = str(backend.trial_folder(spec.num))
        self.retries = 0
        self.run_id: str | None = None
        self.optuna_state: str | None = None
        self._outcome: JobReturn | HPOError | None = None
        self._cancelled = False
        self._ended_at: float | None = None
        self._files = TrialFiles(backend.trial_folder(spec.num))

    @property
    def slurm_job_id(self) -> str:
        return str(self._job.job_id)

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        self.progress = self._files.progress() or self.progress
        if self._job.paths.result_pickle.exists():
            self._take_result()
            return True
        self._backend.read_states(self._job)
        state = self._backend.state_of(self._job)
        if state not in FINAL_STATES:
            return False
        return self._ended(state)

    def result(self) -> JobReturn:
        return settled(self._outcome)

    def cancel(self) -> None:
        if self._outcome is None and not self._cancelled:
            self._cancelled = True
            self._backend.cancel(self._job)

    def prune(self) -> None:
        """Ask the job's trial to stop as pruned at its next epoch end; the job then returns as usual."""
        if self._outcome is None:
            self._files.prune()

    def _take_result(self) -> None:
        import submitit

        try:
            result = self._job.result()
        except submitit.core.utils.UncompletedJobError as exc:
            # the job itself raised (not the trial, whose error Hydra returns): its log says why
            self._outcome = TrialError(
                f"SLURM job {self.slurm_job_id} of trial #{self._spec.num} failed: {_last_line(exc)} "
                f"(its log is {self._job.paths.stderr})"
            )
            return
        assert isinstance(result, JobResult)
        self._outcome = result.ret
        if result.closed_runs:
            closed = result.closed_runs[-1]
            self.run_id, self.optuna_state = closed.run_id, closed.optuna_state

    def _ended(self, state: str) -> bool:
        """Settle a job SLURM reports ended without a result: resubmit it, or fail the trial."""
        reason = f"SLURM job {self.slurm_job_id} ended {state}"
        if self._cancelled:
            self._outcome = BackendError(f"trial #{self._spec.num} cancelled ({reason})")
            return True
        if state not in LOST_STATES:
            now = time.monotonic()
            self._ended_at = self._ended_at or now
            if state == "COMPLETED" and now - self._ended_at < RESULT_GRACE_S:
                return False
            self._outcome = BackendError(
                f"trial #{self._spec.num}: {reason} without a result; its log is {self._job.paths.stderr}"
            )
            return True
        if self.retries >= self._backend.max_retries:
            self._outcome = BackendError(
                f"trial #{self._spec.num}: {reason}, after {self.retries} resubmission(s) "
                f"(launcher.max_retries={self._backend.max_retries})"
            )
            return True
        self.retries += 1
        self._spec = replace(self._spec, run_id=latest_run(self._spec))
        self._job = self._backend.resubmit(self._spec)
        log.warning(
            f"#{self._spec.num}: {reason}: resubmitted as SLURM job {self.slurm_job_id} "
            f"(infrastructure retry {self.retries} of {self._backend.max_retries})"
        )
        return False


def _last_line(exc: BaseException) -> str:
    """The last non-blank line of a submitit error (the job's exception, after its traceback)."""
    lines = [line for line in str(exc).splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    return lines[-1].strip() if lines else type(exc).__name__
