"""hpo's sweeper around the trial loop: what it opens before the first trial is closed on every way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo.driver.study import open_study
from hpo.driver.sweeper import HPOSweeper
from tests.hpo.driver.sweep_config import hpo_sweeper
from tests.launchers.thread_backend import ThreadBackend


def _sweeper(tmp_path: Path, storage: str) -> tuple[HPOSweeper, ThreadBackend]:
    """hpo's sweeper on the real config, its launcher opened on a backend that records being closed."""
    _, sweeper, launcher = hpo_sweeper(
        tmp_path,
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=s",
        "hydra.sweeper.n_trials=1",
    )
    backend = ThreadBackend(lambda spec, cancelled: 0.5)
    launcher.open(backend=backend)
    return sweeper, backend


def test_a_study_already_done_closes_the_backend(tmp_path: Path, hydra_restore_singletons: Any) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    done = open_study("s", storage, optuna.samplers.RandomSampler(seed=0), ["maximize"])
    done.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))
    sweeper, backend = _sweeper(tmp_path, storage)
    assert sweeper.sweep(arguments=[]) is None
    assert backend.closed and not backend.submitted


def test_a_study_that_cannot_open_closes_the_backend(tmp_path: Path, hydra_restore_singletons: Any) -> None:
    sweeper, backend = _sweeper(tmp_path, "nosuchdialect://nowhere")
    with pytest.raises(Exception):  # noqa: B017, PT011 (whatever the storage raises, the backend closes)
        sweeper.sweep(arguments=[])
    assert backend.closed and not backend.submitted
