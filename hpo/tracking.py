"""The sweep's side of MLflow: where the store is, the parent run, and reading back the trials' runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.schema import artifact_location, flatten

PARENT_RUN_ENV = "HPO_PARENT_RUN_ID"
_BATCH = 100


def resolve_tracking_uri(uri: str, base_dir: str | Path) -> str:
    """Make a relative SQLite or file store absolute against ``base_dir``, so every process finds it."""
    base = Path(base_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    if "://" not in uri:
        return str((base / uri).resolve())
    return uri


@dataclass
class TrialRun:
    """One trial's MLflow run as the sweep sees it."""

    run_id: str
    trial_number: int
    status: str
    objective: float | None
    overrides: str
    error: str | None


class ParentRun:
    """The sweep's MLflow parent run: created when the sweep starts, ended with its outcome."""

    def __init__(self, tracking_uri: str, experiment_name: str, run_name: str, tags: Mapping[str, str]):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        experiment = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(experiment_name, artifact_location(tracking_uri))
        )
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id: str = run.info.run_id
        self.ended = False

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Log a nested config as flattened params (``trainer.max_epochs``, ...)."""
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _BATCH])

    def trials(self) -> list[TrialRun]:
        """Every child run of this sweep, in trial order."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'",
            max_results=50000,
        )
        out = [
            TrialRun(
                run_id=r.info.run_id,
                trial_number=int(r.data.tags.get("hpo.trial_number", -1)),
                status=r.info.status,
                objective=r.data.metrics.get("objective"),
                overrides=r.data.tags.get("hpo.overrides", ""),
                error=r.data.tags.get("hpo.error"),
            )
            for r in runs
        ]
        return sorted(out, key=lambda t: t.trial_number)

    def end_orphans(self, status: str) -> list[TrialRun]:
        """End the trial runs still marked RUNNING once no job runs any more (a job killed outright).

        Returns every trial, as ``trials()`` would now, without reading them back a second time.
        """
        trials = self.trials()
        for trial in trials:
            if trial.status == "RUNNING":
                self.client.set_tag(trial.run_id, "hpo.error", "its process stopped before the trial ended")
                self.client.set_terminated(trial.run_id, status)
                trial.status = status
        return trials

    def finish(self, status: str, metrics: Mapping[str, float], artifacts: Iterable[Path]) -> None:
        """Log the sweep's final metrics and files and end the run with ``status``."""
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value))
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)
        self.ended = True
