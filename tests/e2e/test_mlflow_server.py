"""A short sweep's store served by a real ``mlflow server``: what a user browses is all there, checked
through MLflow's REST API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpo.records.registry import registry_name
from tests.conftest import RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXPERIMENT = "browse"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def swept_store(run_hpo: RunHPO, tmp_path: Path) -> Path:
    out = run_hpo(
        [
            "-m",
            "hydra.sweeper.n_trials=2",
            "launcher.workers=2",
            "trainer.max_epochs=2",
            "model.conv_layers=1",
            "model.filters=choice(4,8)",
            f"mlflow.experiment_name={EXPERIMENT}",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / "mlflow.db"


@pytest.fixture
def server(swept_store: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{swept_store}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=swept_store.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"mlflow server did not start: {proc.stderr.read()[-2000:]}") from None
            time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(30)


def _get(base: str, endpoint: str, **params: Any) -> dict[str, Any]:
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return dict(json.loads(response.read()))


def _post(base: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def test_the_server_shows_sweep_trials_curves_architecture_reports_and_the_registered_model(
    server: str,
) -> None:
    experiment = _get(server, "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    runs = _post(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]

    def tags(run: dict[str, Any]) -> dict[str, str]:
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    children = [r for r in runs if "mlflow.parentRunId" in tags(r)]
    assert len(parents) == 1 and len(children) == 2
    parent_id = parents[0]["info"]["run_id"]
    assert parents[0]["info"]["status"] == "FINISHED"
    assert all(tags(c)["mlflow.parentRunId"] == parent_id for c in children)
    params = {p["key"] for p in parents[0]["data"]["params"]}
    assert {"launcher.workers", "trainer.max_epochs", "search_space.model.filters"} <= params

    reports = {f["path"] for f in _get(server, "artifacts/list", run_id=parent_id, path="reports")["files"]}
    assert {"reports/trials.csv", "reports/optimization_history.html"} <= reports, reports
    best_history = _get(server, "metrics/get-history", run_id=parent_id, metric_key="best_value")["metrics"]
    assert [m["step"] for m in best_history] == [0, 1]

    for child in children:
        run_id = child["info"]["run_id"]
        curve = _get(server, "metrics/get-history", run_id=run_id, metric_key="val_accuracy")["metrics"]
        assert [m["step"] for m in curve] == [0, 1]
        files = {
            f["path"] for f in _get(server, "artifacts/list", run_id=run_id, path="architecture")["files"]
        }
        assert {"architecture/architecture.json", "architecture/architecture.svg"} <= files

    name = registry_name(EXPERIMENT)
    model = _get(server, "registered-models/get", name=name)["registered_model"]
    (latest,) = model["latest_versions"]
    best_child = max(
        children, key=lambda c: {m["key"]: m["value"] for m in c["data"]["metrics"]}["objective"]
    )
    assert latest["run_id"] == best_child["info"]["run_id"]
