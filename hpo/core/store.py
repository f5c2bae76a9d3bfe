"""Where a sweep's MLflow store is, as every process must name it, and the experiment a trial joins."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_tracking_uri(uri: str, base_dir: str | Path) -> str:
    """Make a relative SQLite or file store absolute against ``base_dir``, so every process finds it."""
    base = Path(base_dir)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    if "://" not in uri:
        return str((base / uri).resolve())
    return uri


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store, so the store is self-contained
    whatever directory the trials ran from; None lets any other store (a server) decide."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlruns").as_uri()


def trial_experiment_id(
    client: Any, tracking_uri: str, experiment_name: str, parent_run_id: str | None
) -> str:
    """The experiment a trial's run goes in: its parent run's, else ``experiment_name`` (created beside the
    store when missing)."""
    if parent_run_id:
        return str(client.get_run(parent_run_id).info.experiment_id)
    if experiment := client.get_experiment_by_name(experiment_name):
        return str(experiment.experiment_id)
    return str(client.create_experiment(experiment_name, artifact_location(tracking_uri)))
