"""The study's storage as the sweep's driver holds it: every write goes to the database at once, every read
is served from a copy in memory.

Optuna's own cache for a database re-reads every unfinished trial on each read, and a sweep with
``workers`` trials in flight reads several times per trial (ask, suggest, tell): that was most of what a
trial cost the driver. The driver is the study's only writer while it runs, so its copy stays true; a
write still reaches the database before it returns, so a driver killed at any point loses nothing.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage

from hpo.core.errors import HPOError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState


class StudyWrittenElsewhere(HPOError):
    """Another process added trials to the study this driver runs."""


class DriverStorage(BaseStorage):
    """A database storage (``url``) mirrored in memory for the studies this process opens.

    Ids handed out are the memory copy's; each maps to the database's own.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = RDBStorage(url)
        self._memory = InMemoryStorage()
        self._db_study: dict[int, int] = {}
        self._db_trial: dict[int, int] = {}
        self._last_db_trial = -1

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        db_id = self._db.create_new_study(directions, study_name)
        name = study_name or self._db.get_study_name_from_id(db_id)
        study_id = self._memory.create_new_study(directions, name)
        self._db_study[study_id] = db_id
        return study_id

    def get_study_id_from_name(self, study_name: str) -> int:
        try:
            return self._memory.get_study_id_from_name(study_name)
        except KeyError:
            return self._load(self._db.get_study_id_from_name(study_name))

    def _load(self, db_id: int) -> int:
        """Copy the database's study ``db_id``, its attributes and trials, into memory."""
        study_id = self._memory.create_new_study(
            self._db.get_study_directions(db_id), self._db.get_study_name_from_id(db_id)
        )
        self._db_study[study_id] = db_id
        for key, value in self._db.get_study_user_attrs(db_id).items():
            self._memory.set_study_user_attr(study_id, key, value)
        for key, value in self._db.get_study_system_attrs(db_id).items():
            self._memory.set_study_system_attr(study_id, key, value)
        for trial in self._db.get_all_trials(db_id, deepcopy=False):
            self._db_trial[self._memory.create_new_trial(study_id, trial)] = trial._trial_id
        return study_id

    def delete_study(self, study_id: int) -> None:
        trial_ids = [t._trial_id for t in self._memory.get_all_trials(study_id, deepcopy=False)]
        self._db.delete_study(self._db_study[study_id])
        self._memory.delete_study(study_id)
        del self._db_study[study_id]
        for trial_id in trial_ids:
            del self._db_trial[trial_id]

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._db.set_study_user_attr(self._db_study[study_id], key, value)
        self._memory.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._db.set_study_system_attr(self._db_study[study_id], key, value)
        self._memory.set_study_system_attr(study_id, key, value)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._memory.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._memory.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._memory.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._memory.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        """The studies this process opened (others in the database are not mirrored)."""
        return self._memory.get_all_studies()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        db_id = self._db.create_new_trial(self._db_study[study_id], template_trial)
        trial_id = self._memory.create_new_trial(study_id, template_trial)
        self._db_trial[trial_id] = db_id
        # the database numbers a trial by the trials before it: when its row follows this driver's last
        # one, no other process added one since, and reading the number back can be saved
        follows = db_id == self._last_db_trial + 1
        self._last_db_trial = db_id
        number = self._memory.get_trial_number_from_id(trial_id)
        if not follows and self._db.get_trial_number_from_id(db_id) != number:
            raise StudyWrittenElsewhere(
                f"study '{self.get_study_name_from_id(study_id)}' in {self.url} gained trials from another "
                "process while this sweep ran it: run one sweep of a study at a time"
            )
        return trial_id

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self._db.set_trial_param(self._db_trial[trial_id], param_name, param_value_internal, distribution)
        self._memory.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._memory.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if not self._db.set_trial_state_values(self._db_trial[trial_id], state, values):
            return False
        return self._memory.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._db.set_trial_intermediate_value(self._db_trial[trial_id], step, intermediate_value)
        self._memory.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._db.set_trial_user_attr(self._db_trial[trial_id], key, value)
        self._memory.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._db.set_trial_system_attr(self._db_trial[trial_id], key, value)
        self._memory.set_trial_system_attr(trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._memory.get_trial(trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._memory.get_all_trials(study_id, deepcopy, states)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._memory.get_best_trial(study_id)

    def remove_session(self) -> None:
        self._db.remove_session()
