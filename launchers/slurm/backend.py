"""The SLURM backend: each trial is one SLURM job, submitted through submitit's ``AutoExecutor``.

A job runs the driver's ``JobRunner`` on the trial's ``JobSpec`` in a fresh Python process on a node, so
the trial logs to MLflow exactly as a local one does. The jobs' folders sit in the sweep directory (a
shared file system on a cluster), one folder per trial: a driver that was killed is followed by one that
re-attaches to each trial's latest job there. The jobs do not depend on the driver: only ``cancel`` (on
Ctrl-C or SIGTERM, through the sweep's ``cancel_all``) stops them.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.core.errors import BackendError
from hpo.core.schema import LauncherConf
from launchers.backend import Backend
from launchers.hydra_job import JobResult, JobRunner, JobSpec
from launchers.slurm.job import SlurmJobHandle
from launchers.slurm.network_fs import refuse_sqlite_on_network_fs
from launchers.slurm.trial_job import SlurmTrial

if TYPE_CHECKING:
    import submitit

log = logging.getLogger(__name__)


def executor_parameters(settings: LauncherConf) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments for every trial's job, from the launcher's settings.

    The job is not requeued by SLURM itself (``--no-requeue``): a preempted job or one on a lost node
    ends, and the driver resubmits the trial, counting the retry and its reason.
    """
    slurm = settings.slurm
    params: dict[str, Any] = {
        "timeout_min": settings.timeout_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_additional_parameters": {"no_requeue": True, **slurm.additional_parameters},
        "slurm_setup": list(slurm.setup),
    }
    optional = {
        "gpus_per_node": settings.gpus_per_worker or None,
        "mem_gb": slurm.mem_gb,
        "cpus_per_task": slurm.cpus_per_task,
        "slurm_partition": slurm.partition,
        "slurm_account": slurm.account,
        "slurm_qos": slurm.qos,
        "slurm_constraint": slurm.constraint,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


class SlurmBackend(Backend):
    """Submits each trial as a SLURM job and follows it; ``jobs_dir`` holds the jobs' folders."""

    def __init__(
        self, runner: JobRunner, jobs_dir: Path, settings: LauncherConf, stores: dict[str, str]
    ) -> None:
        import cloudpickle

        if shutil.which("sbatch") is None:
            raise BackendError(
                "launcher.backend=slurm needs SLURM's sbatch on PATH: run hpo on the cluster's login node"
            )
        refuse_sqlite_on_network_fs(stores)
        self._jobs_dir = jobs_dir
        self._gpus = settings.gpus_per_worker
        self._params = executor_parameters(settings)
        self._state_poll_s = settings.slurm.state_poll_s
        self._last_read = -math.inf
        self.max_retries = settings.max_retries
        # the runner is the same for every job: pickled once, loaded by each job
        self._runner_path = jobs_dir / "runner" / f"{uuid.uuid4().hex}.pkl"
        self._runner_path.parent.mkdir(parents=True, exist_ok=True)
        self._runner_path.write_bytes(cloudpickle.dumps(runner))

    def trial_folder(self, num: int) -> Path:
        """The folder of trial ``num``'s jobs, one sub-folder per job named by its SLURM id."""
        return self._jobs_dir / f"trial_{num}"

    def submit(self, spec: JobSpec, slot: int) -> SlurmJobHandle:
        return SlurmJobHandle(self, spec, self.resubmit(spec))

    def resubmit(self, spec: JobSpec) -> submitit.Job[JobResult]:
        """Submit a job for ``spec``'s trial (anew, after its last job was lost) and return it."""
        import submitit

        executor = submitit.AutoExecutor(folder=self.trial_folder(spec.num) / "%j", cluster="slurm")
        executor.update_parameters(name=f"hpo-trial-{spec.num}", **self._params)
        folder = self.trial_folder(spec.num)
        job = executor.submit(SlurmTrial(str(self._runner_path), spec, os.getcwd(), self._gpus, str(folder)))
        log.info(f"#{spec.num} submitted as SLURM job {job.job_id}")
        return job

    def attach(self, spec: JobSpec, job_id: str, run_id: str | None) -> SlurmJobHandle | None:
        """Follow the latest job of the trial whose folder is ``job_id``; None (the trial is submitted anew)
        when its folder holds no job, or SLURM no longer knows it and it left no result."""
        import submitit

        folder = Path(job_id)
        ids = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
        if not ids:
            return None
        job: submitit.Job[JobResult] = submitit.SlurmJob(folder / "%j", str(ids[-1]))
        self._last_read = -math.inf
        self.read_states(job)
        if not job.paths.result_pickle.exists() and self.state_of(job) == "UNKNOWN":
            return None
        log.info(f"#{spec.num} re-attached to SLURM job {job.job_id} ({self.state_of(job)})")
        return SlurmJobHandle(self, spec, job)

    def read_states(self, job: submitit.Job[JobResult]) -> None:
        """Read the states of every job followed (one sacct call), unless they were read less than
        ``launcher.slurm.state_poll_s`` ago."""
        now = time.monotonic()
        if now - self._last_read >= self._state_poll_s:
            self._last_read = now
            job.get_info(mode="force")

    @staticmethod
    def state_of(job: submitit.Job[JobResult]) -> str:
        """The job's state as last read (sacct's first word: CANCELLED, not "CANCELLED by 0")."""
        state = str(job.get_info(mode="cache").get("State") or "UNKNOWN")
        return state.split()[0] if state.strip() else "UNKNOWN"

    def cancel(self, job: submitit.Job[JobResult]) -> None:
        """scancel the job; its end is read at the next poll."""
        job.cancel(check=False)
        self._last_read = -math.inf
