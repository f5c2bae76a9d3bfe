"""The sweep's side of MLflow: where the store is, the parent run, and reading back the trials' runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.core.names import ERROR_TAG, OPTUNA_STATE_TAG, PRUNED_TAG, TRIAL_NUMBER_TAG
from hpo.core.schema import flatten
from hpo.core.store import artifact_location

_BATCH = 100


@dataclass
class TrialRun:
    """One trial's MLflow run as the sweep sees it."""

    run_id: str
    trial_number: int
    status: str
    objective: float | None
    overrides: str
    error: str | None
    started_ms: int = 0
    # the trial's Optuna state, once the driver has told the study
    optuna_state: str | None = None
    # the trial stopped early because the study pruned it (its run says so before the study is told)
    pruned: bool = False


class ParentRun:
    """The sweep's MLflow parent run: created when the sweep starts (or reopened when a study resumes),
    ended with its outcome."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str,
        tags: Mapping[str, str],
        resume_run_id: str | None = None,
    ):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.resumed = resume_run_id is not None and self._reopen(resume_run_id, tags)
        if self.resumed:
            assert resume_run_id is not None
            self.run_id: str = resume_run_id
        else:
            experiment = self.client.get_experiment_by_name(experiment_name)
            self.experiment_id = (
                experiment.experiment_id
                if experiment
                else self.client.create_experiment(experiment_name, artifact_location(tracking_uri))
            )
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
            self.run_id = run.info.run_id

    def _reopen(self, run_id: str, tags: Mapping[str, str]) -> bool:
        """Mark an earlier sweep's run RUNNING again, with ``tags`` updated; False when it is gone."""
        from mlflow.entities import RunTag
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        if run.info.lifecycle_stage != "active":
            return False
        self.experiment_id = run.info.experiment_id
        self.client.update_run(run_id, status="RUNNING")
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        return True

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Log a nested config as flattened params (``trainer.max_epochs``, ...); a reopened run keeps the
        values it has (MLflow params cannot change)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params if self.resumed else {}
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items() if k not in logged]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _BATCH])

    def trial_runs(self, number: int) -> list[TrialRun]:
        """The child runs of trial ``number`` (one, unless a job died before the driver learnt of its run)."""
        return self._search(f"tags.{TRIAL_NUMBER_TAG} = '{number}'")

    def tag_trial(self, number: int, tags: Mapping[str, str]) -> None:
        """Set tags on every child run of trial ``number``."""
        from mlflow.entities import RunTag

        for run in self.trial_runs(number):
            self.client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def trials(self) -> list[TrialRun]:
        """Every child run of this sweep, in trial order."""
        return self._search()

    def _search(self, condition: str = "") -> list[TrialRun]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'"
            + (f" and {condition}" if condition else ""),
            max_results=50000,
        )
        out = [
            TrialRun(
                run_id=r.info.run_id,
                trial_number=int(r.data.tags.get(TRIAL_NUMBER_TAG, -1)),
                status=r.info.status,
                objective=r.data.metrics.get("objective"),
                overrides=r.data.tags.get("hpo.overrides", ""),
                error=r.data.tags.get(ERROR_TAG),
                started_ms=r.info.start_time or 0,
                optuna_state=r.data.tags.get(OPTUNA_STATE_TAG),
                pruned=r.data.tags.get(PRUNED_TAG) == "true",
            )
            for r in runs
        ]
        return sorted(out, key=lambda t: (t.trial_number, t.started_ms))

    def end_orphans(self, status: str) -> list[TrialRun]:
        """End the trial runs still marked RUNNING once no job runs any more (a job killed outright).

        Returns every trial, as ``trials()`` would now, without reading them back a second time.
        """
        trials = self.trials()
        for trial in trials:
            if trial.status == "RUNNING":
                self.client.set_tag(trial.run_id, ERROR_TAG, "its process stopped before the trial ended")
                self.client.set_terminated(trial.run_id, status)
                trial.status = status
        return trials

    def finish(
        self, status: str, metrics: Mapping[str, float], artifacts: Iterable[Path], step: int = 0
    ) -> None:
        """Log the sweep's final metrics at ``step`` (the trials settled, the step its live reports log
        their counts at, so that the last is the run's value) and its files, and end it with ``status``."""
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value), step=step)
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)
