"""The driver's record of a remote trial opens a RUNNING child run and closes it with its outcome."""

from __future__ import annotations

import base64
import io
import math
import tarfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from hpo.records.remote_trial import TrialRecord


def _store(tmp_path: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("e", (tmp_path / "mlruns").as_uri())
    return uri, client, client.create_run(experiment_id).info.run_id


def _open(uri: str, parent: str, params: dict[str, Any]) -> TrialRecord:
    return TrialRecord.open(uri, "unused", parent, "trial-3", params, {"hpo.trial_number": "3"})


def _bundle(metrics: dict[str, list[list[float]]], params: dict[str, str], tags: dict[str, str]) -> dict:
    buffer = io.BytesIO()
    tarfile.open(fileobj=buffer, mode="w:gz").close()
    return {
        "params": params,
        "tags": tags,
        "metrics": metrics,
        "datasets": [],
        "models": [],
        "artifacts": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def test_a_record_opens_a_running_child_run_and_completes_it(tmp_path: Path) -> None:
    uri, client, parent = _store(tmp_path)
    record = _open(uri, parent, {"model.filters": 8, "trainer.learning_rate": 0.01})

    run = client.get_run(record.run_id)
    assert run.info.status == "RUNNING" and run.info.run_name == "trial-3"
    assert run.info.experiment_id == client.get_run(parent).info.experiment_id
    assert run.data.params == {"model.filters": "8", "trainer.learning_rate": "0.01"}
    assert run.data.tags["hpo.trial_number"] == "3" and run.data.tags["mlflow.parentRunId"] == parent

    record.tag({"hpo.retries": 1})
    record.complete(None, {"cost_usd": 0.25, "loss": math.nan}, {"hpo.worker_id": "w-1"})

    run = client.get_run(record.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.data.tags["hpo.retries"] == "1" and run.data.tags["hpo.worker_id"] == "w-1"
    assert run.data.metrics["cost_usd"] == 0.25 and math.isnan(run.data.metrics["loss"])


def test_a_record_replays_a_bundle_past_mlflows_batch_limits(tmp_path: Path) -> None:
    uri, client, parent = _store(tmp_path)
    record = _open(uri, parent, {"model.filters": 8})
    bundle = _bundle(
        {"val_accuracy": [[step, 1000 + step, step / 2000] for step in range(1500)]},
        {"model.filters": "8", **{f"p{i}": str(i) for i in range(150)}},
        {f"t{i}": str(i) for i in range(150)},
    )
    TrialRecord(uri, record.run_id).complete(bundle, {"cost_usd": 0.5}, {"hpo.worker_id": "w-1"})

    run = client.get_run(record.run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 151 and run.data.params["p149"] == "149"
    assert {f"t{i}" for i in range(150)} <= set(run.data.tags) and run.data.tags["hpo.worker_id"] == "w-1"
    history = client.get_metric_history(record.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1500))
    assert run.data.metrics == {"val_accuracy": 1499 / 2000, "cost_usd": 0.5}


def test_an_interrupted_trial_ends_killed_with_its_reason(tmp_path: Path) -> None:
    uri, client, parent = _store(tmp_path)
    record = _open(uri, parent, {})

    record.end("KILLED", "cancelled: the sweep was interrupted", {"hpo.job_id": "j-1"})

    run = client.get_run(record.run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert run.data.tags["hpo.error"] == "cancelled: the sweep was interrupted"
    assert run.data.tags["hpo.job_id"] == "j-1" and run.data.params == {}
