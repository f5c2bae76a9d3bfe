"""The study's storage: a journal file by default or a database URL, every write in it when it returns, a
study opened again going on from its trials, and a trial left RUNNING taken up again as the same trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.trial import TrialState

from hpo.core.errors import ConfigError
from hpo.core.optuna_storage import open_storage
from hpo.driver.study import open_study, reopen


@pytest.fixture(params=["journal", "sqlite"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A journal file (the default) or a SQLite database URL (given as hydra.sweeper.storage)."""
    if request.param == "journal":
        return str(tmp_path / "optuna.journal")
    return f"sqlite:///{tmp_path / 'o.db'}"


def _open(location: str) -> optuna.Study:
    return open_study("s", location, optuna.samplers.TPESampler(seed=0, constant_liar=True), ["maximize"])


def _load(location: str) -> optuna.Study:
    """The study as another process reads it."""
    return optuna.load_study(study_name="s", storage=open_storage(location))


def _snapshot(study: optuna.Study) -> list[tuple[int, str, dict[str, object], object, dict[str, object]]]:
    return [
        (t.number, t.state.name, t.params, t.values, t.user_attrs) for t in study.get_trials(deepcopy=False)
    ]


def test_a_url_opens_a_database_anything_else_a_journal_file(tmp_path: Path) -> None:
    assert isinstance(open_storage(f"sqlite:///{tmp_path / 'o.db'}"), RDBStorage)
    assert isinstance(open_storage(str(tmp_path / "optuna.journal")), JournalStorage)


def test_each_write_is_in_the_storage_when_it_returns(location: str) -> None:
    study = _open(location)
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.set_user_attr("job", f"j{i}")
        if i < 2:
            study.tell(trial, 0.5 + i / 10)
    running = study.ask()

    fresh = _load(location)
    assert _snapshot(fresh) == _snapshot(study)
    assert [t.state for t in fresh.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING] * 2
    assert fresh.trials[-1].number == running.number == 3
    assert fresh.best_value == pytest.approx(0.6)


def test_a_study_opened_again_has_its_trials_and_goes_on_from_them(location: str) -> None:
    earlier = _open(location)
    earlier.set_user_attr("hpo.parent_run_id", "abc")
    earlier.enqueue_trial({"lr": 0.01})
    done = earlier.ask()
    done.suggest_float("lr", 1e-4, 1e-1, log=True)
    earlier.tell(done, 0.9)
    stale = earlier.ask()
    stale.suggest_float("lr", 1e-4, 1e-1, log=True)

    study = _open(location)
    assert _snapshot(study) == _snapshot(earlier)
    assert study.user_attrs == {"hpo.parent_run_id": "abc"}
    study.tell(stale.number, 0.7)
    trial = study.ask()
    assert trial.number == 2
    study.tell(trial, 0.8)

    assert [(t.number, t.state, t.value) for t in _load(location).trials] == [
        (0, TrialState.COMPLETE, 0.9),
        (1, TrialState.COMPLETE, 0.7),
        (2, TrialState.COMPLETE, 0.8),
    ]


def test_a_trial_left_running_is_taken_up_again_as_the_same_trial(location: str) -> None:
    earlier = _open(location)
    earlier.tell(earlier.ask(), 0.5)
    left = earlier.ask()
    lr = left.suggest_float("lr", 1e-4, 1e-1, log=True)
    left.set_user_attr("hpo.runpod_job_id", "job-1")

    study = _open(location)
    trial = reopen(study, left.number)
    assert trial.number == 1
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == lr, "its stored value, not a new draw"
    trial.set_user_attr("hpo.cost_usd", 0.25)
    study.tell(trial, 0.75)

    (_, again) = _load(location).trials
    assert (again.state, again.value, again.params) == (TrialState.COMPLETE, 0.75, {"lr": lr})
    assert again.user_attrs == {"hpo.runpod_job_id": "job-1", "hpo.cost_usd": 0.25}


def test_only_a_study_open_study_opened_takes_a_trial_up_again() -> None:
    study = optuna.create_study()
    study.ask()
    with pytest.raises(TypeError, match="open_study"):
        reopen(study, 0)


def test_a_storage_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the Optuna storage nosuch://x"):
        _open("nosuch://x")
    with pytest.raises(ConfigError, match="cannot open the Optuna storage"):
        _open(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'optuna.db'}")
    with pytest.raises(ConfigError, match="cannot open the Optuna storage"):
        _open(str(tmp_path / "missing" / "optuna.journal"))
    _open(f"sqlite:///{tmp_path / 'optuna.db'}")
    with pytest.raises(ConfigError, match="cannot open the Optuna storage .*optuna.db: .*journal file"):
        _open(str(tmp_path / "optuna.db"))  # a database given as a path, not a URL
