"""The SQL writer leaves a run exactly as MLflow's client writes it, in one transaction per write."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hpo.records.run_writers import ClientRunWriter, RunChanges, RunWriter, SqlRunWriter, run_writer


def _write_trial(writer: RunWriter, experiment_id: str, parent: str) -> str:
    run_id = writer.create(
        experiment_id,
        "trial-3",
        [RunTag("hpo.trial_number", "3"), RunTag("mlflow.parentRunId", parent)],
        [Param("model.filters", "8"), Param("trainer.learning_rate", "0.01")],
    )
    series = [Metric("val_accuracy", v, 1000 + step, step) for step, v in enumerate([0.5, 0.8, 0.7])]
    writer.write(
        run_id, RunChanges(series, [Param("trainer.max_epochs", "3")], [RunTag("hpo.worker_id", "w-1")])
    )
    again = [*series, Metric("val_accuracy", 0.9, 900, 1), Metric("loss", math.nan, 2000, 0)]
    writer.write(run_id, RunChanges(again, tags=[RunTag("hpo.worker_id", "w-2")], status="FINISHED"))
    return run_id


def _view(client: MlflowClient, run_id: str) -> dict[str, object]:
    run = client.get_run(run_id)
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "ended": run.info.end_time is not None and run.info.end_time >= run.info.start_time,
        "artifact_uri": run.info.artifact_uri.replace(run_id, "RUN"),
        "params": run.data.params,
        "tags": {k: v for k, v in run.data.tags.items() if k != "mlflow.user"},
        "latest": {k: v if not math.isnan(v) else "nan" for k, v in run.data.metrics.items()},
        "history": sorted(
            (m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, "val_accuracy")
        ),
    }


def test_sql_and_client_writers_leave_the_same_run(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("e", (tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment_id).info.run_id

    assert isinstance(run_writer(client), SqlRunWriter)
    by_sql = _write_trial(run_writer(client), experiment_id, parent)
    by_client = _write_trial(ClientRunWriter(client), experiment_id, parent)

    sql_view = _view(client, by_sql)
    assert sql_view == _view(client, by_client)
    assert sql_view["status"] == "FINISHED" and sql_view["tags"]["hpo.worker_id"] == "w-2"  # type: ignore[index]
    assert sql_view["latest"] == {"val_accuracy": 0.7, "loss": "nan"}, "latest point by step, then time"
    assert len(sql_view["history"]) == 4, "a point written twice is stored once"  # type: ignore[arg-type]
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert {r.info.run_id for r in children} == {by_sql, by_client}


def test_a_failed_write_leaves_nothing_of_itself(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("e", (tmp_path / "mlruns").as_uri())
    writer = run_writer(client)
    run_id = writer.create(experiment_id, "trial-0", [], [Param("model.filters", "8")])

    with pytest.raises(MlflowException, match="model.filters"):
        changes = RunChanges(
            [Metric("objective", 0.5, 1, 0)],
            [Param("model.filters", "16")],
            [RunTag("hpo.error", "x")],
            "FINISHED",
        )
        writer.write(run_id, changes)

    run = client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.params == {"model.filters": "8"}
    assert "objective" not in run.data.metrics and "hpo.error" not in run.data.tags
