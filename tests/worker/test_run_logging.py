"""A trial's MLflow run carries the Optuna state its end decides, and its process says which run it closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpo.core.closed_runs import ClosedRun, take_closed_runs
from hpo.core.names import OPTUNA_STATE_TAG
from worker import run_logging


@pytest.fixture
def store(tmp_path: Path) -> str:
    take_closed_runs()
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _run(store: str, run_id: str) -> tuple[str, dict[str, str]]:
    run = MlflowClient(store).get_run(run_id)
    return run.info.status, run.data.tags


def test_a_finished_trial_run_is_tagged_complete_with_its_end(store: str) -> None:
    with run_logging.trial_run(store, "unit", None, "trial-0", {"x": 1}, {}) as run_id:
        pass
    status, tags = _run(store, run_id)
    assert (status, tags[OPTUNA_STATE_TAG]) == ("FINISHED", "COMPLETE")
    assert take_closed_runs() == [ClosedRun(run_id, "COMPLETE")]


def test_a_failed_trial_run_is_tagged_fail_with_its_error(store: str) -> None:
    with pytest.raises(ValueError), run_logging.trial_run(store, "unit", None, "trial-1", {}, {}) as run_id:
        raise ValueError("diverged")
    status, tags = _run(store, run_id)
    assert (status, tags[OPTUNA_STATE_TAG], tags["hpo.error"]) == ("FAILED", "FAIL", "ValueError: diverged")
    assert take_closed_runs() == [ClosedRun(run_id, "FAIL")]


def test_a_stopped_trial_run_leaves_its_state_to_the_sweep(store: str) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        run_logging.trial_run(store, "unit", None, "trial-2", {}, {}) as run_id,
    ):
        raise KeyboardInterrupt
    status, tags = _run(store, run_id)
    assert status == "KILLED" and OPTUNA_STATE_TAG not in tags
    assert take_closed_runs() == [ClosedRun(run_id, None)]
