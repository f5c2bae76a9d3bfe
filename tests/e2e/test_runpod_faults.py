"""Fault tests of the RunPod path against an emulator as unkind as RunPod: workers scale from none with cold
starts, stop after an idle timeout and bill every second in between; real ``python -m worker`` processes
train real models and the driver runs as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from launchers.runpod.emulator import EmulatorProcess
from launchers.runpod.rest import RestClient
from tests.conftest import REPO_ROOT, RunHPO
from tests.e2e.test_runpod import TRIAL_ARGS as RUNPOD_TRIAL_ARGS

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

API_KEY = "rp-faults-KEY-0123456789abcdef"
COLD_START_S = 2.0
IDLE_TIMEOUT_S = 3
# runpod_cpu's price: the emulator's catalog has GPUs only
PRICE_PER_HOUR = 0.12
TRIAL_ARGS = [*RUNPOD_TRIAL_ARGS, "mlflow.log_model=false"]


def _emulator(tmp_path: Path, workers: int = 2, gpu_count: int = 0, **options: Any) -> EmulatorProcess:
    return EmulatorProcess(
        workers=workers,
        workers_min=0,
        cold_start_s=COLD_START_S,
        idle_timeout_s=IDLE_TIMEOUT_S,
        gpu_count=gpu_count,
        api_key=API_KEY,
        log_dir=tmp_path / "emulator",
        env={"PYTHONPATH": str(REPO_ROOT), "KERAS_HOME": str(tmp_path / "keras")},
        **options,
    )


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with _emulator(tmp_path) as emu:
        yield emu


def _args(emulator: EmulatorProcess, *extra: str, hardware: str = "runpod_cpu") -> list[str]:
    replaced = {e.split("=", 1)[0] for e in extra}
    return [
        "-m",
        f"hardware={hardware}",
        f"launcher.runpod.api_base={emulator.api_base}",
        f"launcher.runpod.rest_api_base={emulator.rest_api_base}",
        "launcher.runpod.poll_interval_s=0.2",
        *[a for a in TRIAL_ARGS if a.split("=", 1)[0] not in replaced],
        *extra,
    ]


def _env(emulator: EmulatorProcess) -> dict[str, str]:
    return {"RUNPOD_API_KEY": API_KEY, "RUNPOD_ENDPOINT_ID": emulator.endpoint_id}


def _start_driver(tmp_path: Path, emulator: EmulatorProcess, args: list[str]) -> subprocess.Popen[str]:
    """``python -m hpo`` started as a user starts it, its output collected for the end."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=tmp_path,
        env={**os.environ, **_env(emulator), "KERAS_HOME": str(tmp_path / "keras")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _runs(tmp_path: Path) -> tuple[Any, list[Any]]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rp").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_ctrl_c_stops_every_workers_training_within_a_batch_and_leaves_nothing_queued(tmp_path: Path) -> None:
    with _emulator(tmp_path, workers=4) as emulator:
        args = _args(
            emulator,
            "hydra.sweeper.n_trials=12",
            "launcher.workers=4",
            "trainer.max_epochs=200",
            "trainer.early_stopping=false",
            "trainer.batch_size=16",
        )
        driver = _start_driver(tmp_path, emulator, args)

        try:
            _wait(lambda: len(_training(emulator)) >= 4, 300, "4 trials training past their first epoch")
            pids = sorted(emulator.worker_pids())
            driver.send_signal(signal.SIGINT)
            output, _ = driver.communicate(timeout=120)
        finally:
            driver.kill()
        assert driver.returncode == 130, output[-3000:]
        jobs = emulator.health()["jobs"]
        assert jobs["inQueue"] == 0 and jobs["inProgress"] == 0, jobs
        _wait(
            lambda: all(s["released"] is not None for s in emulator.stats()["stops"].values()),
            30,
            "every stopped job to leave its worker",
        )
        stops = emulator.stats()["stops"]
        assert len(stops) >= 4, "every job a worker held got a per-job stop"
        # the worker's next ping (every second) after its trial stopped and ended its run KILLED, on 2 busy
        # cores: seconds, where training to the end would take many minutes
        for job_id, stop in stops.items():
            assert stop["release_s"] < 6.0, (job_id, stop)
        assert sorted(emulator.worker_pids()) == pids, "a stop ends the job, not the worker"
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "emulator").glob("w*-*.log"))
        stopped = re.findall(r"stopped after (\d+) batch\(es\)", logs)
        assert len(stopped) >= 4 and all(int(n) <= 1 for n in stopped), stopped

        emulator.wait_idle(timeout_s=60)
        assert all(w["stopped_s"] is not None for w in emulator.billing()["workers"]), "scaled back to none"
        _, children = _runs(tmp_path)
        assert children and all(r.info.status in ("KILLED", "FINISHED") for r in children)


def _training(emulator: EmulatorProcess) -> list[str]:
    """The jobs whose worker reported a finished epoch (RunPod's progress output) and still trains them."""
    import requests

    headers = {"Authorization": f"Bearer {API_KEY}"}
    training = []
    for job in emulator.stats()["job_log"]:
        if job["status"] == "IN_PROGRESS":
            status = requests.get(f"{emulator.url}/status/{job['id']}", headers=headers, timeout=10).json()
            if isinstance(status.get("output"), dict) and status["output"].get("epoch", 0) >= 1:
                training.append(job["id"])
    return training


def test_an_api_brownout_mid_sweep_runs_every_trial_exactly_once(
    tmp_path: Path, emulator: EmulatorProcess
) -> None:
    args = _args(emulator, "hydra.sweeper.n_trials=6", "launcher.workers=2")
    driver = _start_driver(tmp_path, emulator, args)
    try:
        _wait(lambda: emulator.health()["jobs"]["completed"] >= 1, 300, "a first trial")
        emulator.set_faults(brownout_s=30.0, hang_s=6.0)
        output, _ = driver.communicate(timeout=600)
    finally:
        driver.kill()
    assert driver.returncode == 0, output[-3000:]
    assert "6 of 6 trials completed, 0 failed" in output
    stats = emulator.stats()
    assert stats["injected"]["brownout_503"] + stats["injected"]["brownout_hangs"] > 0, (
        "the brownout refused or dropped requests"
    )
    _, children = _runs(tmp_path)
    assert sorted(r.data.tags["hpo.trial_number"] for r in children) == [str(n) for n in range(6)]
    assert all(r.info.status == "FINISHED" for r in children)
    assert duplicate_seconds(stats) == 0.0, "no trial ran on two workers at once"


def duplicate_seconds(stats: dict[str, Any]) -> float:
    """Seconds that jobs of one trial spent in progress at the same time as another job of that trial."""
    by_trial: dict[Any, list[tuple[float, float]]] = {}
    for job in stats["job_log"]:
        if job["started_s"] is not None:
            by_trial.setdefault(job["trial"], []).append((job["started_s"], job["finished_s"] or 1e12))
    overlap = 0.0
    for spans in by_trial.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            overlap += max(0.0, end - start)
    return overlap


def test_an_endpoint_that_cannot_run_jobs_is_one_line_before_any_trial(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    rest = RestClient(API_KEY, emulator.rest_api_base)
    rest.update_endpoint(emulator.endpoint_id, {"workers": {"max": 0}})
    started = time.monotonic()
    out = run_hpo(_args(emulator, "hydra.sweeper.n_trials=2"), **_env(emulator))
    assert out.returncode == 2
    assert "max workers" in _one_error_line(out.stderr).lower()
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("multirun/*/*/trial_*")), "no trial was asked"

    rest.update_endpoint(emulator.endpoint_id, {"workers": {"max": 2}})
    out = run_hpo(_args(emulator, "hydra.sweeper.n_trials=2", hardware="runpod_2gpu"), **_env(emulator))
    assert out.returncode == 2
    line = _one_error_line(out.stderr)
    assert "0" in line and "2" in line and "GPU" in line, line
    assert not list(tmp_path.glob("multirun/*/*/trial_*")), "no trial was asked"


def test_a_queue_no_worker_starts_for_stops_the_sweep_within_queue_timeout(
    run_hpo: RunHPO, emulator: EmulatorProcess
) -> None:
    emulator.set_faults(throttled_workers=10)
    started = time.monotonic()
    out = run_hpo(
        _args(emulator, "hydra.sweeper.n_trials=2", "launcher.runpod.queue_timeout_s=8"), **_env(emulator)
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 2
    line = _one_error_line(out.stderr)
    assert "throttled" in line and "the sweep stopped" in line, line
    assert elapsed < 8 + 60, elapsed
    assert emulator.health()["jobs"]["inQueue"] == 0, "the sweep's jobs were cancelled"


def test_a_worker_without_the_profiles_gpus_never_completes_a_trial(run_hpo: RunHPO, tmp_path: Path) -> None:
    with _emulator(tmp_path, gpu_count=2) as emulator:
        out = run_hpo(
            _args(emulator, "hydra.sweeper.n_trials=2", "launcher.max_retries=1", hardware="runpod_2gpu"),
            **_env(emulator),
        )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "sees 0 GPU(s)" in out.stdout + out.stderr
    _, children = _runs(tmp_path)
    assert children and all(r.info.status == "FAILED" for r in children)
    assert all(int(r.data.tags["hpo.retries"]) == 1 for r in children), "resubmitted, as the infrastructure's"


def test_a_sweeps_cost_is_the_emulators_bill_cold_starts_and_idle_tail_included(
    run_hpo: RunHPO, tmp_path: Path, emulator: EmulatorProcess
) -> None:
    out = run_hpo(_args(emulator, "hydra.sweeper.n_trials=4", "launcher.workers=2"), **_env(emulator))
    assert out.returncode == 0, out.stderr[-3000:]
    emulator.wait_idle(timeout_s=60)
    billing = emulator.billing()
    billed = billing["worker_seconds"] * PRICE_PER_HOUR / 3600
    parent, _ = _runs(tmp_path)
    metrics = parent.data.metrics
    assert metrics["cost_usd"] == pytest.approx(billed, rel=0.02), (metrics, billing)
    assert metrics["cost_cold_start_usd"] > 0 and metrics["cost_idle_usd"] > 0
    parts = metrics["cost_execution_usd"] + metrics["cost_cold_start_usd"] + metrics["cost_idle_usd"]
    assert parts == pytest.approx(metrics["cost_usd"], rel=1e-6)
    assert sum(w["cold_start_s"] for w in billing["workers"]) >= COLD_START_S
