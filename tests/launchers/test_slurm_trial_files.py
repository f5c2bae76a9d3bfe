"""A SLURM trial's progress and prune files, as the driver's handle and the job each use them: the job's
progress reaches the driver whole, and a prune file reaches the job's trial through the trial channel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpo.core import trial_channel
from launchers.slurm.trial_files import TrialFiles


@pytest.fixture(autouse=True)
def clean_channel() -> Iterator[None]:
    yield
    trial_channel.set_sink(None)
    trial_channel.reset()


def test_the_jobs_progress_reaches_the_driver_as_written(tmp_path: Path) -> None:
    driver, job = TrialFiles(tmp_path), TrialFiles(tmp_path)
    assert driver.progress() is None, "no epoch finished yet"
    trial_channel.set_sink(job.report)
    trial_channel.report({"epoch": 1, "epochs": 3, "objective": 0.5, "metrics": {"val_accuracy": 0.5}})
    trial_channel.report({"epoch": 2, "epochs": 3, "objective": 0.75, "metrics": {"val_accuracy": 0.75}})
    assert driver.progress() == {
        "epoch": 2,
        "epochs": 3,
        "objective": 0.75,
        "metrics": {"val_accuracy": 0.75},
    }
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"], "no partial file left behind"


def test_a_prune_file_stops_the_jobs_running_trial(tmp_path: Path) -> None:
    stop = threading.Event()
    TrialFiles(tmp_path).watch()
    with trial_channel.trial(stop.set):
        assert not stop.is_set()
        TrialFiles(tmp_path).prune()
        assert stop.wait(30), "the job's watch saw the prune and stopped its trial"
