"""Real sweeps on a real single-node SLURM cluster, through the CLI: every trial a SLURM job training a
digits model and logging to MLflow; a job cancelled by hand, a driver killed and re-run, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import RunHPO
from tests.slurm_cluster import (  # noqa: F401  (slurm_cluster, slurm_daemons: the SLURM tests' cluster)
    listed_jobs,
    slurm_cluster,
    slurm_daemons,
    sweep_jobs,
    wait_until_gone,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

ARGS = [
    "-m",
    "hardware=slurm_cpu",
    "launcher.workers=2",
    "launcher.slurm.state_poll_s=1",
    "trainer.max_epochs=1",
    "model.conv_layers=1",
    "model.filters=8",
    "mlflow.log_model=false",
    "mlflow.experiment_name=slurm",
    "reports.plots=none",
    "hydra.sweep.dir=sweep",
]


def _start_driver(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    """``python -m hpo`` started as a user starts it; its output goes to driver.log."""
    log = open(tmp_path / "driver.log", "a")  # noqa: SIM115  (the driver's, closed with it)
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=tmp_path,
        env={**os.environ, "KERAS_HOME": str(tmp_path / "keras")},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def _running_job(tmp_path: Path, trial: int) -> list[str]:
    """The trial's SLURM job, once it runs."""
    folder = tmp_path / "sweep" / ".slurm" / f"trial_{trial}"
    return listed_jobs(sorted(p.name for p in folder.glob("*") if p.name.isdigit()), "R")


def _children(tmp_path: Path) -> tuple[list[Any], list[Any]]:
    """The sweep's parent runs and trial runs, once the driver has created the MLflow store (reading it
    before would race the driver's creation of its tables)."""
    if "MLflow: experiment" not in (tmp_path / "driver.log").read_text():
        return [], []
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("slurm")
    if experiment is None:
        return [], []
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_cancelled_job_and_killed_driver_lose_no_trial_and_run_none_twice(
    tmp_path: Path, run_hpo: RunHPO
) -> None:
    """Trial 0's first job is scancel'ed by hand (resubmitted once), then the driver is SIGKILLed while its
    jobs train; the same command re-attaches to them and ends the study with exactly 3 trials."""
    args = [*ARGS, "hydra.sweeper.n_trials=3"]
    driver = _start_driver(tmp_path, args)
    try:
        (first,) = _wait(lambda: _running_job(tmp_path, 0), 180, "trial 0's job to run")
        subprocess.run(["scancel", first], check=True)
        log = tmp_path / "driver.log"
        _wait(lambda: "resubmitted as SLURM job" in log.read_text(), 120, "the driver to resubmit trial 0")
        driver.kill()
        driver.wait(timeout=30)
    finally:
        driver.kill()
    text = log.read_text()
    assert f"SLURM job {first} ended CANCELLED: resubmitted" in text and "infrastructure retry 1 of 2" in text
    assert listed_jobs(sweep_jobs(tmp_path / "sweep")), "the jobs outlive the driver"

    out = run_hpo(args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "re-attached to SLURM job" in out.stdout + out.stderr
    assert wait_until_gone(tmp_path / "sweep") == [], "no job left behind"

    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["n_completed"] == 3 and results["n_failed"] == 0
    parents, children = _children(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["hpo.trial_number"] for r in finished) == ["0", "1", "2"], "each trial once"
    assert all(r.data.tags["hpo.backend"] == "slurm" and r.data.tags["hpo.slurm_job_id"] for r in finished)
    assert len({r.data.tags["hpo.slurm_job_id"] for r in finished}) == 3
    assert first not in {r.data.tags["hpo.slurm_job_id"] for r in finished}
    assert not [r for r in children if r.info.status == "RUNNING"]
    assert len(children) == 3, "the resubmitted job continued the cancelled job's run"


def test_ctrl_c_cancels_every_job_of_the_sweep(tmp_path: Path) -> None:
    driver = _start_driver(tmp_path, [*ARGS, "hydra.sweeper.n_trials=4", "trainer.max_epochs=50"])
    try:
        _wait(
            lambda: len([r for r in _children(tmp_path)[1] if r.info.status == "RUNNING"]) == 2,
            240,
            "2 trials training",
        )
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=120)
    finally:
        driver.kill()
    assert driver.returncode == 130, (tmp_path / "driver.log").read_text()[-3000:]
    assert wait_until_gone(tmp_path / "sweep") == [], "squeue lists none of the sweep's jobs"
    children = _children(tmp_path)[1]
    assert len(children) == 2 and {r.info.status for r in children} == {"KILLED"}
