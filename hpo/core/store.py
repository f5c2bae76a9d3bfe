"""Where a sweep's MLflow store is, as every process must name it, and the experiment a trial joins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo.core.errors import ConfigError

# how long an MLflow tracking server gets to answer before hpo gives up on it
_SERVER_PROBE_S = 10.0


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


def check_store(tracking_uri: str) -> None:
    """Fail at once, before anything is recorded, on an MLflow store (``tracking_uri``, resolved) that no run
    could be written to: a SQLite file whose directory cannot be created (MLflow creates it, but the study's
    default storage beside it is opened first), a server that does not answer (MLflow would retry it for
    minutes), or a URI MLflow cannot open.

    Raises:
        ConfigError: naming mlflow.tracking_uri and why.
    """
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
            raise ConfigError(
                f"mlflow.tracking_uri {tracking_uri}: cannot create the directory {folder} "
                f"({why or type(exc).__name__})"
            ) from None
        return
    if tracking_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=_SERVER_PROBE_S).close()
        except urllib.error.HTTPError:
            pass  # it answered: whatever it says of /health, MLflow's own requests will tell
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(
                f"mlflow.tracking_uri {tracking_uri}: the MLflow tracking server does not answer ({reason}); "
                "start it (mlflow server), or use a SQLite store such as sqlite:///mlflow.db"
            ) from None
        return
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri)
    except MlflowException as exc:
        reason = str(exc.message).strip()
        raise ConfigError(f"mlflow.tracking_uri {tracking_uri} cannot be opened: {reason}") from None
