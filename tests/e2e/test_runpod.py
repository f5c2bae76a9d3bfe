"""Sweeps on the RunPod backend against the local emulator: the real runpod SDK on both sides, real
``python -m worker`` processes training real models, and the driver's MLflow store checked afterwards."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient

from launchers.runpod.emulator import EmulatorProcess
from tests.conftest import REPO_ROOT, RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

API_KEY = "rp-test-KEY-0123456789abcdef"
# tiny CNNs for two epochs: the point is the path, not the accuracy
TRIAL_ARGS = [
    "trainer.max_epochs=2",
    "model.conv_layers=1",
    "model.filters=choice(4,8)",
    "model.dense_units=choice(0,16)",
    "mlflow.experiment_name=rp",
]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """Two real ``python -m worker`` processes behind the emulator, shared by this module's tests."""
    logs = tmp_path_factory.mktemp("emulator-logs")
    with EmulatorProcess(
        workers=2, gpu_count=0, api_key=API_KEY, log_dir=logs, env={"PYTHONPATH": str(REPO_ROOT)}
    ) as emu:
        yield emu


@pytest.fixture(autouse=True)
def no_faults(emulator: EmulatorProcess) -> Iterator[None]:
    emulator.set_faults(error_rate=0.0, kill_worker_jobs=0, timeout_jobs=0)
    yield
    emulator.set_faults(error_rate=0.0, kill_worker_jobs=0, timeout_jobs=0)


def _runpod_args(emulator: EmulatorProcess, *extra: str) -> list[str]:
    """The CLI arguments of a sweep on the emulator; ``extra`` overrides replace TRIAL_ARGS' same keys."""
    replaced = {e.split("=", 1)[0] for e in extra}
    return [
        "-m",
        "hardware=runpod_cpu",
        f"launcher.runpod.api_base={emulator.api_base}",
        f"launcher.runpod.rest_api_base={emulator.rest_api_base}",
        "launcher.runpod.poll_interval_s=0.2",
        *[a for a in TRIAL_ARGS if a.split("=", 1)[0] not in replaced],
        *extra,
    ]


def _env(emulator: EmulatorProcess, **extra: str) -> dict[str, str]:
    return {"RUNPOD_API_KEY": API_KEY, "RUNPOD_ENDPOINT_ID": emulator.endpoint_id, **extra}


def _children(tmp_path: Path) -> list[Any]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rp").experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_sweep_on_emulated_runpod_logs_every_trial_like_a_local_run(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    out = run_hpo(_runpod_args(emulator, "hydra.sweeper.n_trials=3", "launcher.workers=2"), **_env(emulator))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 of 3 trials completed, 0 failed" in out.stdout
    assert re.search(r"#\d+ epoch 2/2 val_accuracy=0\.\d+", out.stdout + out.stderr), (
        "workers' progress reaches the console"
    )

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    children = _children(tmp_path)
    assert sorted(r.data.tags["hpo.trial_number"] for r in children) == ["0", "1", "2"]
    worker_ids = set()
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["hpo.backend"] == "runpod"
        assert child.data.tags["hpo.retries"] == "0"
        worker_ids.add(child.data.tags["hpo.worker_id"])
        assert child.data.metrics["cost_usd"] > 0, "execution time x runpod_cpu's price_per_hour"
        assert float(child.data.tags["hpo.cost_usd"]) == pytest.approx(
            child.data.metrics["cost_usd"], rel=1e-3
        )
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [0, 1]
        assert {"model.filters", "trainer.learning_rate"} <= set(child.data.params)
        assert child.data.metrics["objective"] == max(
            m.value for m in client.get_metric_history(run_id, "val_accuracy")
        )
    assert worker_ids <= set(emulator.stats()["workers"]), "worker ids are the emulator's pods"

    (results_file,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    best = max(children, key=lambda r: r.data.metrics["objective"])
    assert results["best_value"] == pytest.approx(best.data.metrics["objective"])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.keras.load_model(f"runs:/{best.info.run_id}/model")
    assert model.count_params() > 0
    for trial in results_file.parent.glob("trial_*"):
        assert json.loads((trial / "result.json").read_text())["worker_id"] in worker_ids

    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert API_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_local_and_emulated_runpod_give_the_same_objective(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    fixed = ["hydra.sweeper.n_trials=1", "launcher.workers=1", "mlflow.log_model=false"]
    (tmp_path / "local").mkdir()
    (tmp_path / "cloud").mkdir()
    local = run_hpo(["-m", *TRIAL_ARGS, *fixed, "mlflow.tracking_uri=sqlite:///local/mlflow.db"])
    assert local.returncode == 0, local.stderr[-3000:]
    cloud = run_hpo(
        [*_runpod_args(emulator, *fixed), "mlflow.tracking_uri=sqlite:///cloud/mlflow.db"], **_env(emulator)
    )
    assert cloud.returncode == 0, cloud.stderr[-3000:]

    def objective(store: str) -> tuple[float, dict[str, str]]:
        client = MlflowClient(f"sqlite:///{tmp_path / store / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("rp").experiment_id])
        (child,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        return child.data.metrics["objective"], child.data.params

    (local_value, local_params), (cloud_value, cloud_params) = objective("local"), objective("cloud")
    assert local_params == cloud_params, "the same trial was asked of both backends"
    assert cloud_value == local_value, f"difference {cloud_value - local_value!r}"


def test_faults_are_retried_and_nothing_is_lost(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    emulator.set_faults(error_rate=0.2, kill_worker_jobs=1, timeout_jobs=1)
    before = emulator.stats()
    out = run_hpo(
        _runpod_args(
            emulator,
            "hydra.sweeper.n_trials=4",
            "launcher.workers=2",
            "launcher.max_retries=3",
            "launcher.runpod.retry_timeouts=true",
        ),
        **_env(emulator),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 of 4 trials completed, 0 failed" in out.stdout
    after = emulator.stats()
    assert after["injected_errors"] > before["injected_errors"], "429/503 answers were injected"
    assert after["worker_restarts"] > before["worker_restarts"], "a worker was lost mid-job"
    assert after["injected"]["killed_workers"] == before["injected"]["killed_workers"] + 1
    assert after["injected"]["timed_out_jobs"] == before["injected"]["timed_out_jobs"] + 1
    resubmits = re.findall(r"resubmitting \(retry \d/3\)", out.stdout + out.stderr)
    assert resubmits, "the lost and the timed-out job were submitted again"
    children = _children(tmp_path)
    assert sorted(r.data.tags["hpo.trial_number"] for r in children) == ["0", "1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in children)
    assert sum(int(r.data.tags["hpo.retries"]) for r in children) == len(resubmits), "retries are tagged"


def test_a_trial_that_raises_is_failed_with_its_reason_not_retried(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    out = run_hpo(
        _runpod_args(
            emulator,
            "hydra.sweeper.n_trials=2",
            "launcher.workers=2",
            "model.conv_layers=5",
        ),
        **_env(emulator),
    )
    assert out.returncode == 2
    assert "all 2 trials failed" in out.stderr and "conv_layers=5" in out.stderr
    assert "resubmitting" not in out.stdout + out.stderr
    children = _children(tmp_path)
    assert [r.info.status for r in children] == ["FAILED", "FAILED"]
    assert all("conv_layers=5" in r.data.tags["hpo.error"] for r in children)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"RUNPOD_ENDPOINT_ID": ""}, "no RunPod endpoint: set RUNPOD_ENDPOINT_ID"),
        ([], {"RUNPOD_API_KEY": ""}, "RUNPOD_API_KEY is not set"),
        ([], {"RUNPOD_API_KEY": "wrong"}, "RunPod refused RUNPOD_API_KEY (HTTP 401)"),
        (["hardware=runpod_3gpu"], {}, "hardware"),
        (["launcher.runpod.fallback=sometimes"], {}, "launcher.runpod.fallback must be fail or local"),
    ],
)
def test_bad_runpod_setup_is_one_clear_line(
    run_hpo: RunHPO, emulator: EmulatorProcess, args: list[str], env: dict[str, str], message: str
) -> None:
    out = run_hpo([*_runpod_args(emulator, "hydra.sweeper.n_trials=1"), *args], **{**_env(emulator), **env})
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_unreachable_endpoint_falls_back_to_local_when_asked(run_hpo: RunHPO, tmp_path: Path) -> None:
    args = [
        "-m",
        "hardware=runpod_cpu",
        "launcher.runpod.api_base=http://127.0.0.1:9/v2",
        "launcher.runpod.rest_api_base=http://127.0.0.1:9/rest",
        "hydra.sweeper.n_trials=1",
        *TRIAL_ARGS,
    ]
    env = {"RUNPOD_API_KEY": API_KEY, "RUNPOD_ENDPOINT_ID": "local"}
    refused = run_hpo(args, **env)
    assert refused.returncode == 2 and "is unreachable" in refused.stderr
    assert not list(tmp_path.glob("multirun/*/*/trial_*")), "no trial was asked"
    fallback = run_hpo([*args, "launcher.runpod.fallback=local"], **env)
    assert fallback.returncode == 0, fallback.stderr[-3000:]
    assert "running this sweep on THIS machine" in fallback.stdout + fallback.stderr
    assert [r.info.status for r in _children(tmp_path)] == ["FINISHED"]


def test_a_malformed_payload_sent_straight_to_a_worker_fails_with_the_reason(
    emulator: EmulatorProcess,
) -> None:
    import runpod

    runpod.api_key = API_KEY
    runpod.endpoint_url_base = emulator.api_base
    endpoint = runpod.Endpoint(emulator.endpoint_id)
    job = endpoint.run({"protocol": 1, "config": {"trainer": {"lr": 1}}, "trial": {}})
    deadline = time.monotonic() + 120
    while job.status() not in ("FAILED", "COMPLETED") and time.monotonic() < deadline:
        time.sleep(0.2)
    status = endpoint.rp_client.get(f"{emulator.endpoint_id}/status/{job.job_id}")
    assert status["status"] == "FAILED"
    error = json.loads(status["error"])
    assert error["hpo_error"] == "payload" and "trial payload" in error["message"]
