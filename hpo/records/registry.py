"""Registering a sweep's best model in the MLflow Model Registry, so it loads as ``models:/<name>/latest``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.core.errors import HPOError
from hpo.core.names import TRIAL_NUMBER_TAG

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

MODEL_ARTIFACT = "model"
_DESCRIPTION_VALUES = 60


class RegistryError(HPOError):
    """The best model cannot be registered: no such run, the run logged no model, or the tracking store
    cannot host a Model Registry."""


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version and the URI that loads it."""

    name: str
    version: int
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def registry_name(experiment_name: str) -> str:
    """The registered model name for an experiment's best model: ``<experiment>-best``, made URI-safe."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment_name).strip("-.")
    return f"{base or 'hpo'}-best"


def register_best(
    tracking_uri: str, best_run_id: str, name: str | None = None, description: str | None = None
) -> RegisteredModel:
    """Register the model that run ``best_run_id`` logged as a new version of ``name`` (by default
    :func:`registry_name` of the run's experiment), with the run's params and metrics in its description."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    where = f"the MLflow store at {tracking_uri}"
    no_registry = RegistryError(
        f"{where} cannot host a Model Registry: use a database store (mlflow.tracking_uri="
        "sqlite:///mlflow.db) or a tracking server started with a database --backend-store-uri"
    )
    try:
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        run = client.get_run(best_run_id)
    except UnsupportedModelRegistryStoreURIException:
        raise no_registry from None
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no run {best_run_id} in {where}: pass a trial run's id") from None
        raise RegistryError(f"cannot read run {best_run_id} from {where}: {_line(exc)}") from None
    text = _describe(run, description)
    tags: dict[str, Any] = {
        k: run.data.tags[k] for k in (TRIAL_NUMBER_TAG, "mlflow.parentRunId") if k in run.data.tags
    }
    try:
        name = name or registry_name(client.get_experiment(run.info.experiment_id).name)
        source, model_id = _model_source(client, run)
        _ensure_registered(client, name, text)
        version = client.create_model_version(
            name, source, run_id=best_run_id, tags=tags, description=text, model_id=model_id
        )
    except UnsupportedModelRegistryStoreURIException:
        raise no_registry from None
    except MlflowException as exc:
        raise RegistryError(
            f"cannot register the model of run {best_run_id} in {where}: {_line(exc)}"
        ) from None
    return RegisteredModel(name, int(version.version), best_run_id)


def _model_source(client: MlflowClient, run: Run) -> tuple[str, str | None]:
    """Where the run's ``model`` lives: its MLflow 3 logged model, or an MLflow 2 style run artifact."""
    from mlflow.entities import LoggedModelStatus

    run_id = run.info.run_id
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT}'"
    )
    ready = [m for m in found if m.status == LoggedModelStatus.READY]
    if ready:
        # The artifacts' location, not models:/<id>, which MLflow resolves through the global tracking URI.
        model = max(ready, key=lambda m: m.creation_timestamp or 0)
        return model.artifact_location, model.model_id
    if found:
        raise RegistryError(f"the model run {run_id} logged was never completed (status {found[0].status})")
    if any(a.path == f"{MODEL_ARTIFACT}/MLmodel" for a in client.list_artifacts(run_id, MODEL_ARTIFACT)):
        return f"{run.info.artifact_uri}/{MODEL_ARTIFACT}", None
    raise RegistryError(
        f"run {run_id} logged no '{MODEL_ARTIFACT}': the best trial kept no model "
        "(set mlflow.log_model=true to log each trial's model)"
    )


def _ensure_registered(client: MlflowClient, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
        client.update_registered_model(name, description=description)


def _describe(run: Run, lead: str | None) -> str:
    """Markdown naming the trial, its objective, params and metrics."""
    data = run.data
    trial = data.tags.get(TRIAL_NUMBER_TAG, "?")
    objective = data.metrics.get("objective")
    head = lead or f"Best trial #{trial} of sweep run {data.tags.get('mlflow.parentRunId', '?')}"
    if objective is not None:
        head += f" (objective {objective:.6g})"
    params = sorted(data.params.items())[:_DESCRIPTION_VALUES]
    metrics = sorted(data.metrics.items())[:_DESCRIPTION_VALUES]
    return "\n".join(
        [
            f"{head}. Trial run: {run.info.run_id}.",
            "",
            "**Params**",
            "",
            *(f"- {k}: {v}" for k, v in params),
            "",
            "**Metrics**",
            "",
            *(f"- {k}: {v:.6g}" for k, v in metrics),
        ]
    )


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
