"""The RunPod handler in this process: a real trial from a payload, its result, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpo.core.payload import PROTOCOL_VERSION, TrialPayload
from tests.worker.test_trial import config  # noqa: F401 (the fixture)
from worker import handler
from worker.stopping import StopRequest


@pytest.fixture
def payload(config: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    built = TrialPayload(
        protocol=PROTOCOL_VERSION, config=config, gpus_expected=0, overrides=["model.filters=8"]
    )
    built.trial.study, built.trial.number, built.trial.seed = "unit", 2, 0
    return built.to_json()


def test_a_trial_result_carries_objective_history_worker_and_its_run(
    payload: dict[str, Any], tmp_path: Path
) -> None:
    out = handler.handle({"id": "job-1", "input": payload}, StopRequest())
    assert "error" not in out, out.get("error")
    assert out["objective"] == max(out["history"]["val_accuracy"])
    assert len(out["history"]["val_accuracy"]) == 2 and out["gpus_seen"] == 0
    assert out["worker_id"] and out["device_warning"] is None
    run = out["run"]
    assert run["params"]["model.filters"] == "8" and run["tags"]["hpo.trial_number"] == "2"
    assert [p[0] for p in run["metrics"]["val_accuracy"]] == [0, 1]
    assert run["models"] == ["model"], "the model travels back with the result"
    assert not (tmp_path / "mlflow.db").exists(), "the worker never wrote to the driver's store"
    assert len(json.dumps(out)) < handler.MAX_RESULT_BYTES


def test_a_result_over_runpods_limit_fails_with_what_to_do(
    payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "MAX_RESULT_BYTES", 10_000)
    out = handler.handle({"id": "job-2", "input": payload}, StopRequest())
    error = json.loads(out["error"])
    assert error["hpo_error"] == "trial"
    assert "output limit" in error["message"]
    assert "mlflow.log_model=false" in error["message"]


def test_a_malformed_payload_fails_the_job_at_once(payload: dict[str, Any]) -> None:
    payload["config"]["trainer"]["epochs"] = 3
    error = json.loads(handler.handle({"id": "job-3", "input": payload}, StopRequest())["error"])
    assert error["hpo_error"] == "payload"
    assert "trainer.epochs" in error["message"]


def test_a_worker_with_fewer_gpus_than_promised_fails_the_job_as_devices(payload: dict[str, Any]) -> None:
    payload["config"]["hardware"]["gpus_per_worker"] = 2
    payload["gpus_expected"] = 2
    error = json.loads(handler.handle({"id": "job-4", "input": payload}, StopRequest())["error"])
    assert error["hpo_error"] == "devices"
    assert "sees 0 GPU(s) but the hardware profile promises 2" in error["message"]
