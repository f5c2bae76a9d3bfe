"""The driver's MLflow record of a remote trial, as a backend uses it; ``hpo.records`` implements it.

A remote worker cannot write to the driver's store, so a remote backend opens the trial's run when it
submits the job and closes it with the outcome. The backend holds only this interface; the plugin that
Hydra instantiates hands it the implementation (``hpo.records.remote_trial.TrialRecord``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class TrialRunRecord(Protocol):
    """One trial's child run, written by the driver."""

    @property
    def run_id(self) -> str: ...

    def tag(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the run."""
        ...

    def complete(
        self, bundle: dict[str, Any] | None, metrics: Mapping[str, float], tags: Mapping[str, Any]
    ) -> None:
        """Replay the worker's run (if it shipped one), add the driver's metrics and tags, end it FINISHED."""
        ...

    def end(self, status: str, error: str, tags: Mapping[str, Any] | None = None) -> None:
        """End the run as FAILED or KILLED, with the reason in the ``hpo.error`` tag and ``tags``."""
        ...

    def running(self) -> bool:
        """Whether the run is still RUNNING (a worker that logs to it directly has not ended it yet)."""
        ...


class TrialRunRecords(Protocol):
    """Opens a trial's run, or continues one an earlier driver opened."""

    def open(
        self,
        tracking_uri: str,
        experiment_name: str,
        parent_run_id: str | None,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> TrialRunRecord:
        """Create the trial's child run (RUNNING) with its params and tags."""
        ...

    def __call__(self, tracking_uri: str, run_id: str) -> TrialRunRecord:
        """The record of the existing run ``run_id``."""
        ...
