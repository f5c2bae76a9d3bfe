"""The slurm backend's promises on a real SLURM cluster, driven as a sweeper drives the hpo launcher: a
trial that raised fails with its error and is not retried; a job cancelled by hand is resubmitted once,
with its reason; the jobs get the launcher.slurm settings."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobStatus
from hydra.types import TaskFunction
from omegaconf import DictConfig

from hpo.core.schema import SlurmConf
from launchers.launcher import HPOLauncher
from tests.launchers.hpo_launcher import make_launcher
from tests.slurm_cluster import slurm_cluster, slurm_daemons  # noqa: F401  (the SLURM tests' cluster)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.usefixtures("slurm_cluster", "hydra_restore_singletons"),
]


def _slurm_launcher(task: TaskFunction, sweep_dir: Path, **slurm: Any) -> HPOLauncher:
    launcher = make_launcher(task, sweep_dir, workers=1)
    launcher.settings.backend = "slurm"
    launcher.settings.max_retries = 1
    launcher.settings.slurm = SlurmConf(state_poll_s=0.5, **slurm)
    return launcher


def _job_folders(sweep_dir: Path, num: int) -> list[str]:
    return sorted(p.name for p in (sweep_dir / ".slurm" / f"trial_{num}").iterdir() if p.name.isdigit())


def test_a_trial_that_raised_fails_with_its_error_and_is_not_retried(tmp_path: Path) -> None:
    def task(cfg: DictConfig) -> float:
        raise ValueError(f"learning rate {cfg.lr} diverged")

    sweep_dir = tmp_path / "sweep"
    (ret,) = _slurm_launcher(task, sweep_dir).launch([["+lr=10"]], initial_job_idx=0)
    assert ret.status == JobStatus.FAILED
    assert isinstance(ret._return_value, ValueError) and "learning rate 10 diverged" in str(ret._return_value)
    assert len(_job_folders(sweep_dir, 0)) == 1, "the trial's error is its own: no second job"


def test_a_job_cancelled_by_hand_is_resubmitted_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first job waits until it is scancel'ed (SIGTERM); the second one returns. The jobs carry the
    launcher.slurm settings: partition, memory, CPUs, an extra #SBATCH option and a set-up line."""
    markers = tmp_path / "started"
    markers.mkdir()

    def task(cfg: DictConfig) -> str:
        (markers / os.environ["SLURM_JOB_ID"]).write_text(os.environ.get("HPO_TEST_SETUP", ""))
        while len(list(markers.iterdir())) == 1:
            time.sleep(0.1)  # waits for scancel, which interrupts it
        return f"{cfg.x} on {os.environ['SLURM_JOB_ID']}"

    def cancel_first_job() -> None:
        deadline = time.monotonic() + 120
        while not list(markers.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        subprocess.run(["scancel", *[p.name for p in markers.iterdir()]], check=True)

    sweep_dir = tmp_path / "sweep"
    launcher = _slurm_launcher(
        task,
        sweep_dir,
        partition="debug",
        mem_gb=1,
        cpus_per_task=1,
        additional_parameters={"comment": "hpo-test"},
        setup=["export HPO_TEST_SETUP=ran"],
    )
    canceller = threading.Thread(target=cancel_first_job)
    canceller.start()
    with caplog.at_level(logging.WARNING):
        (ret,) = launcher.launch([["+x=7"]], initial_job_idx=0)
    canceller.join()

    first, second = _job_folders(sweep_dir, 0)
    assert ret.status == JobStatus.COMPLETED and ret.return_value == f"7 on {second}"
    assert f"SLURM job {first} ended CANCELLED: resubmitted as SLURM job {second}" in caplog.text
    assert "infrastructure retry 1 of 1" in caplog.text
    assert {p.read_text() for p in markers.iterdir()} == {"ran"}, "both jobs ran the set-up line"
    script = (sweep_dir / ".slurm" / "trial_0" / second / f"{second}_submission.sh").read_text()
    for option in (
        "--partition=debug",
        "--mem=1GB",
        "--cpus-per-task=1",
        "--comment=hpo-test",
        "--no-requeue",
    ):
        assert f"#SBATCH {option}\n" in script


def test_a_pruned_trial_reports_its_epochs_and_stops_at_the_prune(tmp_path: Path) -> None:
    """The task stands for a trial: it reports an epoch at a time through the trial channel and leaves when
    its stop is set. Its progress reaches the driver through the trial's folder, and so does the prune."""

    def task(cfg: DictConfig) -> tuple[str, int]:
        from hpo.core import trial_channel

        stop = threading.Event()
        with trial_channel.trial(stop.set):
            for epoch in range(1, 601):
                trial_channel.report({"epoch": epoch, "epochs": 600, "objective": epoch / 600, "metrics": {}})
                if stop.wait(0.1):
                    return "pruned", epoch
        return "ran every epoch", epoch

    launcher = _slurm_launcher(task, tmp_path / "sweep")
    launcher.open()
    job = launcher.start(launcher.prepare(["+x=1"], 0))
    deadline = time.monotonic() + 120
    while not (job.handle.progress and job.handle.progress["epoch"] >= 2):
        assert not job.done() and time.monotonic() < deadline, "the job reports each epoch while it runs"
        time.sleep(0.1)
    job.handle.prune()
    while not job.done():
        assert time.monotonic() < deadline, "the pruned job came back"
        time.sleep(0.1)
    outcome, epoch = launcher.collect(job).return_value
    assert outcome == "pruned" and 2 <= epoch < 600
