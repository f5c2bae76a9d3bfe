"""A worker's run packed into its result and replayed into the driver's store loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

from hpo.core.run_bundle import pack_run, replay_run


def test_a_packed_run_replays_params_metric_steps_artifacts_and_model(tmp_path: Path) -> None:
    worker_uri = f"sqlite:///{tmp_path / 'worker' / 'mlflow.db'}"
    (tmp_path / "worker").mkdir()
    mlflow.set_tracking_uri(worker_uri)
    mlflow.set_experiment("w")
    x, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    with mlflow.start_run() as run:
        mlflow.log_params({"model.filters": 8, "trainer.max_epochs": 3})
        mlflow.set_tags({"hpo.worker_id": "w-1", "hpo.gpus_seen": "2"})
        for step, value in enumerate([0.5, 0.7, 0.8]):
            mlflow.log_metric("val_accuracy", value, step=step)
        mlflow.log_metric("objective", 0.8)
        mlflow.log_dict({"layers": 3}, "architecture/architecture.json")
        mlflow.sklearn.log_model(LogisticRegression().fit(x, y), name="model")
    bundle = json.loads(json.dumps(pack_run(worker_uri, run.info.run_id)))

    driver_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(driver_uri)
    experiment = client.create_experiment("d", (tmp_path / "mlruns").as_uri())
    target = client.create_run(experiment, tags={"hpo.trial_number": "7"}).info.run_id
    client.log_param(target, "model.filters", "8")
    replay_run(bundle, client, target)

    replayed = client.get_run(target)
    assert replayed.info.status == "RUNNING", "replaying leaves closing the run to the caller"
    assert replayed.data.params["trainer.max_epochs"] == "3"
    assert replayed.data.tags["hpo.worker_id"] == "w-1" and replayed.data.tags["hpo.trial_number"] == "7"
    history = client.get_metric_history(target, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.7), (2, 0.8)]
    assert replayed.data.metrics["objective"] == 0.8
    local = client.download_artifacts(target, "architecture/architecture.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == {"layers": 3}
    mlflow.set_tracking_uri(driver_uri)
    model = mlflow.sklearn.load_model(f"runs:/{target}/model")
    assert model.predict(x).shape == (40,)
