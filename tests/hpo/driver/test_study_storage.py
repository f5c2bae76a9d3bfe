"""The driver's study storage: every write reaches the database at once, reads never touch it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from hpo.core.errors import ConfigError
from hpo.driver.study import open_study
from hpo.driver.study_storage import DriverStorage, StudyWrittenElsewhere


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _open(url: str) -> optuna.Study:
    return open_study("s", url, optuna.samplers.TPESampler(seed=0, constant_liar=True), ["maximize"])


@contextmanager
def _statements(study: optuna.Study) -> Iterator[list[str]]:
    """The SQL statements the study's database receives inside the block."""
    storage = study._storage
    assert isinstance(storage, DriverStorage)
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    engine = storage._db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _snapshot(study: optuna.Study) -> list[tuple[int, str, dict[str, object], object, dict[str, object]]]:
    return [
        (t.number, t.state.name, t.params, t.values, t.user_attrs) for t in study.get_trials(deepcopy=False)
    ]


def test_each_write_is_in_the_database_when_it_returns(tmp_path: Path) -> None:
    study = _open(_url(tmp_path))
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.set_user_attr("job", f"j{i}")
        if i < 2:
            study.tell(trial, 0.5 + i / 10)
    running = study.ask()

    fresh = optuna.load_study(study_name="s", storage=_url(tmp_path))
    assert _snapshot(fresh) == _snapshot(study)
    assert [t.state for t in fresh.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING] * 2
    assert fresh.trials[-1].number == running.number == 3
    assert fresh.best_value == pytest.approx(0.6)


def test_a_study_opened_again_has_its_trials_and_goes_on_from_them(tmp_path: Path) -> None:
    earlier = optuna.create_study(study_name="s", storage=_url(tmp_path), direction="maximize")
    earlier.set_user_attr("hpo.parent_run_id", "abc")
    earlier.enqueue_trial({"lr": 0.01})
    done = earlier.ask()
    done.suggest_float("lr", 1e-4, 1e-1, log=True)
    earlier.tell(done, 0.9)
    stale = earlier.ask()
    stale.suggest_float("lr", 1e-4, 1e-1, log=True)

    study = _open(_url(tmp_path))
    assert _snapshot(study) == _snapshot(earlier)
    assert study.user_attrs == {"hpo.parent_run_id": "abc"}
    study.tell(stale.number, 0.7)
    trial = study.ask()
    assert trial.number == 2
    study.tell(trial, 0.8)

    fresh = optuna.load_study(study_name="s", storage=_url(tmp_path))
    assert [(t.number, t.state, t.value) for t in fresh.trials] == [
        (0, TrialState.COMPLETE, 0.9),
        (1, TrialState.COMPLETE, 0.7),
        (2, TrialState.COMPLETE, 0.8),
    ]


def test_reading_trials_sends_no_query(tmp_path: Path) -> None:
    study = _open(_url(tmp_path))
    for _ in range(4):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("lr", 1e-4, 1e-1, log=True))
    study.ask()
    with _statements(study) as seen:
        assert len(study.get_trials()) == 5
        assert study.best_trial.number in range(4)
        assert study.user_attrs == {}
    assert seen == []


def test_asking_again_reads_no_number_back_while_no_other_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _open(_url(tmp_path))
    storage = study._storage
    assert isinstance(storage, DriverStorage)
    reads: list[int] = []
    read_number = storage._db.get_trial_number_from_id

    def counted(trial_id: int) -> int:
        reads.append(trial_id)
        return read_number(trial_id)

    monkeypatch.setattr(storage._db, "get_trial_number_from_id", counted)
    for _ in range(3):
        study.tell(study.ask(), 0.5)
    assert len(reads) == 1
    assert [t.number for t in optuna.load_study(study_name="s", storage=_url(tmp_path)).trials] == [0, 1, 2]


def test_trials_another_process_adds_stop_the_driver_with_a_clear_error(tmp_path: Path) -> None:
    study = _open(_url(tmp_path))
    study.tell(study.ask(), 0.5)
    optuna.load_study(study_name="s", storage=_url(tmp_path)).ask()
    with pytest.raises(StudyWrittenElsewhere, match="another process"):
        study.ask()


def test_a_storage_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the Optuna storage nosuch://x"):
        _open("nosuch://x")
    with pytest.raises(ConfigError, match="cannot open the Optuna storage"):
        _open(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'optuna.db'}")
