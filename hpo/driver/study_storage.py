"""The study as the driver holds it: Optuna's study with a way to take up a trial by its number."""

from __future__ import annotations

import optuna

from hpo.core.optuna_storage import Storage


class SweepStudy(optuna.Study):
    """An Optuna study that keeps its storage at hand: Optuna's study has no public way to take up a trial
    by its number, which the driver needs for a trial an earlier driver left RUNNING."""

    def __init__(self, study_name: str, storage: Storage, sampler: optuna.samplers.BaseSampler) -> None:
        super().__init__(study_name=study_name, storage=storage, sampler=sampler)
        self.storage = storage

    def reopen(self, number: int) -> optuna.Trial:
        """Trial ``number``, still RUNNING, as a trial to suggest, run and tell again."""
        study_id = self.storage.get_study_id_from_name(self.study_name)
        return optuna.Trial(self, self.storage.get_trial_id_from_study_id_trial_number(study_id, number))
