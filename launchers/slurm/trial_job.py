"""What a trial's SLURM job runs: the driver's ``JobRunner`` on one ``JobSpec``, as a local slot would.

submitit pickles a ``SlurmTrial`` into the job's folder and calls it on the node. It stops the trial with
a KeyboardInterrupt on SIGTERM (``scancel``, preemption, a lost node's cleanup), so the trial records its
run as killed, as a local one does; submitit's own handler would ignore the signal and let SLURM kill the
job half a minute later with the run left RUNNING.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from hpo.core import trial_channel
from hpo.core.names import PARENT_RUN_ENV, TRIAL_NUMBER_TAG
from hpo.core.store import resolve_tracking_uri
from launchers.hydra_job import JobResult, JobSpec
from launchers.slurm.trial_files import TrialFiles

# the MLflow tag of a trial's run that names the SLURM job which ran it
SLURM_JOB_ID_TAG = "hpo.slurm_job_id"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


@dataclass
class SlurmTrial:
    """One trial for a SLURM job: the pickled runner shared by the sweep's jobs, the spec, the driver's
    working directory and GPU count (0: the job sees no GPU, as on the local backend), and the trial's
    folder, where its progress and prune files are (``launchers.slurm.trial_files``)."""

    runner_path: str
    spec: JobSpec
    cwd: str
    gpus: int
    folder: str

    def __call__(self) -> JobResult:
        import cloudpickle

        signal.signal(signal.SIGTERM, _interrupt)
        os.chdir(self.cwd)
        if not self.gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        with open(self.runner_path, "rb") as f:
            runner = cloudpickle.load(f)
        files = TrialFiles(Path(self.folder))
        trial_channel.set_sink(files.report)
        files.watch()
        result: JobResult = runner(self.spec)
        _tag_job_id(self.spec, result)
        return result


def _tag_job_id(spec: JobSpec, result: JobResult) -> None:
    """Tag the trial runs the job closed with the SLURM job id (where the task is hpo's, with a store)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    uri = spec.config.get("mlflow", {}).get("tracking_uri")
    if not (job_id and result.closed_runs and uri):
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_tracking_uri(str(uri), str(spec.config.hydra.runtime.cwd)))
    for closed in result.closed_runs:
        client.set_tag(closed.run_id, SLURM_JOB_ID_TAG, job_id)


def latest_run(spec: JobSpec) -> str | None:
    """The MLflow run of the latest attempt at ``spec``'s trial, which a job resubmitted for it continues
    (so a lost job leaves no second run beside the trial's); ``spec.run_id`` where none is found."""
    parent = os.environ.get(PARENT_RUN_ENV)
    uri = spec.config.get("mlflow", {}).get("tracking_uri")
    if not (parent and uri):
        return spec.run_id
    from mlflow.tracking import MlflowClient

    client = MlflowClient(resolve_tracking_uri(str(uri), str(spec.config.hydra.runtime.cwd)))
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}' and tags.`{TRIAL_NUMBER_TAG}` = '{spec.num}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else spec.run_id
