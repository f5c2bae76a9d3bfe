"""An MLflow run packed into JSON, so a remote worker's run can be replayed into the driver's store.

A remote worker logs its trial into a throwaway local store, packs the run (params, tags, every metric
step, dataset inputs, artifacts and logged models) into a bundle, and returns it in its result; the
driver replays the bundle into the child run it opened, so a local SQLite store works with cloud workers.
"""

from __future__ import annotations

import base64
import io
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

_MODELS_DIR = "__logged_models__"
# MLflow's limits on one log_batch call: 100 params, 100 tags, 1000 entities (metrics included) in all
_PARAMS_OR_TAGS_PER_BATCH, _ENTITIES_PER_BATCH = 100, 1000


def pack_run(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """Everything ``run_id`` logged, as a JSON-able dict (artifacts as a base64 tar.gz)."""
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    metrics = {
        key: [[m.step, m.timestamp, m.value] for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
    }
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if client.list_artifacts(run_id):
            tar.add(client.download_artifacts(run_id, "", tmp), arcname="artifacts")
        for model in models:
            local = Path(tmp) / _MODELS_DIR / model.model_id
            local.mkdir(parents=True)
            tar.add(_download_model(model.artifact_location, local), arcname=f"models/{model.name}")
    return {
        "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "metrics": metrics,
        "datasets": [_dataset(d) for d in (run.inputs.dataset_inputs if run.inputs else [])],
        "models": [m.name for m in models],
        "artifacts": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def curves_bundle(curves: Mapping[str, list[list[float]]]) -> dict[str, Any]:
    """A bundle holding only metric curves (metric -> ``[step, timestamp ms, value]`` points): what a
    driver knows of a remote run it stopped, from the worker's progress updates."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz"):
        pass
    return {
        "params": {},
        "tags": {},
        "metrics": dict(curves),
        "datasets": [],
        "models": [],
        "artifacts": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def replay_run(
    bundle: dict[str, Any],
    client: MlflowClient,
    run_id: str,
    *,
    metrics: Sequence[Metric] = (),
    tags: Mapping[str, str] | None = None,
    logged_params: Mapping[str, str] | None = None,
    experiment_id: str | None = None,
    status: str | None = None,
) -> None:
    """Log a packed run, and the caller's own ``metrics`` and ``tags``, into the (open) run ``run_id`` of
    ``client``'s store, then end it as ``status`` (left open without one).

    A caller that knows the params the run already has and its experiment (``logged_params``,
    ``experiment_id``) saves reading the run back.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    if logged_params is None or experiment_id is None:
        run = client.get_run(run_id)
        logged_params, experiment_id = run.data.params, run.info.experiment_id
    params = [Param(k, v) for k, v in bundle["params"].items() if k not in logged_params]
    all_tags = [RunTag(k, v) for k, v in {**bundle["tags"], **(tags or {})}.items()]
    points = [Metric(k, v, ts, step) for k, series in bundle["metrics"].items() for step, ts, v in series]
    log_batches(client, run_id, [*points, *metrics], params, all_tags)
    if bundle["datasets"]:
        client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(Dataset(**d["dataset"]), [InputTag(k, v) for k, v in d["tags"].items()])
                for d in bundle["datasets"]
            ],
        )
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bundle["artifacts"])), mode="r:gz") as tar:
        if tar.getmembers():
            with tempfile.TemporaryDirectory() as tmp:
                tar.extractall(tmp, filter="data")
                if (Path(tmp) / "artifacts").is_dir():
                    client.log_artifacts(run_id, str(Path(tmp) / "artifacts"))
                for name in bundle["models"]:
                    model = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
                    client.log_model_artifacts(model.model_id, str(Path(tmp) / "models" / name))
                    client.finalize_logged_model(model.model_id, "READY")
    if status is not None:
        client.set_terminated(run_id, status)


def log_batches(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
) -> None:
    """Log ``metrics``, ``params`` and ``tags`` to ``run_id`` in one ``log_batch`` call where they fit
    MLflow's limits on a call, else in as few calls as those limits allow."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        batch_params, params = params[:_PARAMS_OR_TAGS_PER_BATCH], params[_PARAMS_OR_TAGS_PER_BATCH:]
        batch_tags, tags = tags[:_PARAMS_OR_TAGS_PER_BATCH], tags[_PARAMS_OR_TAGS_PER_BATCH:]
        room = _ENTITIES_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)


def bundle_size(bundle: dict[str, Any]) -> int:
    """Bytes the bundle takes in a JSON result."""
    import json

    return len(json.dumps(bundle).encode())


def _download_model(artifact_location: str, dest: Path) -> Path:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(artifact_uri=artifact_location, dst_path=str(dest)))


def _dataset(dataset_input: Any) -> dict[str, Any]:
    d = dataset_input.dataset
    return {
        "dataset": {
            "name": d.name,
            "digest": d.digest,
            "source_type": d.source_type,
            "source": d.source,
            "schema": d.schema,
            "profile": d.profile,
        },
        "tags": {t.key: t.value for t in dataset_input.tags},
    }
