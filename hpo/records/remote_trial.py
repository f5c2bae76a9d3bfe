"""The driver's MLflow record of a remote trial: opened when the trial is submitted, closed with its outcome.

A remote worker cannot write to a local store, so the driver opens the trial's child run itself; it
then either replays the run the worker shipped back, or lets the worker continue the run directly
(``mlflow.log_from=worker``). Either way the run exists from submission on, so an interrupted or lost
trial is closed as KILLED or FAILED rather than missing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hpo.core.names import error_tag
from hpo.core.run_bundle import log_batches, replay_run
from hpo.core.store import trial_experiment_id


class TrialRecord:
    """One trial's child run, written by the driver."""

    def __init__(
        self,
        tracking_uri: str,
        run_id: str,
        params: Mapping[str, str] | None = None,
        experiment_id: str | None = None,
    ) -> None:
        self.client = _client(tracking_uri)
        self.run_id = run_id
        # what the run holds already, where this record opened it: saves reading it back to complete it
        self._params, self._experiment_id = params, experiment_id

    @classmethod
    def open(
        cls,
        tracking_uri: str,
        experiment_name: str,
        parent_run_id: str | None,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> TrialRecord:
        """Create the trial's child run (RUNNING) with its params and tags."""
        experiment_id = _experiment_id(tracking_uri, experiment_name, parent_run_id)
        parent = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        all_tags = {k: str(v) for k, v in {**tags, **parent}.items()}
        logged = {k: str(v)[:6000] for k, v in params.items()}
        client = _client(tracking_uri)
        run_id = client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id
        log_batches(client, run_id, params=[Param(k, v) for k, v in logged.items()])
        return cls(tracking_uri, run_id, logged, experiment_id)

    def tag(self, tags: Mapping[str, Any]) -> None:
        """Set ``tags`` on the open run (a retried job's count and reason)."""
        log_batches(self.client, self.run_id, tags=_tags(tags))

    def complete(
        self, bundle: dict[str, Any] | None, metrics: Mapping[str, float], tags: Mapping[str, Any]
    ) -> None:
        """Replay the worker's run (if it shipped one), add the driver's metrics and tags, end it FINISHED."""
        now = int(time.time() * 1000)
        own_metrics = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        if bundle is None:
            log_batches(self.client, self.run_id, own_metrics, tags=_tags(tags))
            self.client.set_terminated(self.run_id, "FINISHED")
            return
        replay_run(
            bundle,
            self.client,
            self.run_id,
            metrics=own_metrics,
            tags={k: str(v) for k, v in tags.items()},
            logged_params=self._params,
            experiment_id=self._experiment_id,
            status="FINISHED",
        )

    def end(self, status: str, error: str, tags: Mapping[str, Any] | None = None) -> None:
        """End the run as FAILED or KILLED, with the reason in the ``hpo.error`` tag and ``tags``."""
        log_batches(self.client, self.run_id, tags=_tags({**(tags or {}), **error_tag(error)}))
        self.client.set_terminated(self.run_id, status)

    def running(self) -> bool:
        """Whether the run is still RUNNING; a store that cannot be read says no (nothing to wait on)."""
        try:
            return str(self.client.get_run(self.run_id).info.status) == "RUNNING"
        except MlflowException:
            return False


def _tags(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, str(v)) for k, v in tags.items()]


@functools.lru_cache(maxsize=16)
def _experiment_id(tracking_uri: str, experiment_name: str, parent_run_id: str | None) -> str:
    """The experiment of a sweep's trial runs, looked up once per sweep rather than once per trial."""
    return trial_experiment_id(_client(tracking_uri), tracking_uri, experiment_name, parent_run_id)


@functools.lru_cache(maxsize=16)
def _client(tracking_uri: str) -> MlflowClient:
    """One client per store for every trial record of the sweep."""
    return MlflowClient(tracking_uri)
