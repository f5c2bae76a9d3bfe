"""hpo's asynchronous sweeper through the CLI: trials always in flight, failures, and resuming a study after
Ctrl-C or after the driver was killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import RunHPO
from tests.e2e.test_sweep import _descendants, _running

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TOY_APP = Path(__file__).with_name("toy_app.py")
# small, fast trials: one conv layer of a few filters on digits
TINY = [
    "model.conv_layers=1",
    "model.filters=choice(4,8)",
    "model.dense_units=choice(0,16)",
    "mlflow.log_model=false",
]


def _toy(tmp_path: Path, args: list[str], plan: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOY_PLAN": json.dumps(plan)}
    env.pop("HPO_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(TOY_APP), "-m", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _study(tmp_path: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(tmp_path.glob("multirun/*/*/events.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_a_free_worker_starts_the_next_trial_at_once(tmp_path: Path) -> None:
    # trials 0 and 4 are slow: a batch of two would leave a worker idle while each of them runs
    plan = {"0": 4.0, "4": 4.0, "*": 0.5}
    out = _toy(tmp_path, ["hydra.sweeper.n_trials=8", "launcher.workers=2"], plan)
    assert out.returncode == 0, out.stderr[-3000:]
    trial_events = [e for e in _events(tmp_path) if e["event"] in ("submit", "finish")]
    events = sorted(trial_events, key=lambda e: e["t"])
    running, submitted, idle = 0, 0, []
    for event, following in zip(events, events[1:], strict=False):
        running += 1 if event["event"] == "submit" else -1
        submitted += event["event"] == "submit"
        assert running <= 2
        if 2 <= submitted < 8 and running < 2:
            idle.append(following["t"] - event["t"])
    assert idle, "trials finished while others were still to start"
    assert max(idle) < 2.0, f"a worker stayed idle while trials remained: {idle}"
    assert [t.state for t in _study(tmp_path).trials] == [TrialState.COMPLETE] * 8


def test_nan_and_raising_trials_are_failed_trials(tmp_path: Path) -> None:
    out = _toy(tmp_path, ["hydra.sweeper.n_trials=4"], {"0": "nan", "1": "raise", "*": 0.2})
    assert out.returncode == 0, out.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert trials[0].user_attrs["hpo.error"] == "returned nan (not finite)"
    assert trials[1].user_attrs["hpo.error"] == "trial 1 raised on purpose"
    assert "#0 returned nan (not finite): counted as a failed trial" in out.stdout


def test_too_many_failures_stop_the_sweep_with_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    out = _toy(
        tmp_path,
        ["hydra.sweeper.n_trials=6", "launcher.workers=3", "hydra.sweeper.max_failure_rate=0.3"],
        {"0": "raise", "1": "raise", "*": 60},
    )
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 2 finished trials failed, over hydra.sweeper.max_failure_rate=0.3")
    # the first trial to fail is named: 0 or 1, whichever the workers finished first
    events = sorted(_events(tmp_path), key=lambda e: e["t"])
    first = next(e["trial"] for e in events if e["event"] == "finish" and e["state"] == "FAIL")
    assert f"trial #{first}: trial {first} raised on purpose" in last
    assert time.monotonic() - started < 60, "the running trial was cancelled, not waited for"
    states = [t.state for t in _study(tmp_path).trials]
    assert states[:2] == [TrialState.FAIL, TrialState.FAIL]
    assert set(states[2:]) == {TrialState.RUNNING}, "cancelled trials stay RUNNING, to run again on resume"


def test_the_stock_optuna_sweeper_still_runs_batches_on_the_hpo_launcher(tmp_path: Path) -> None:
    out = _toy(tmp_path, ["hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"], {})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("hpo launcher (local, 2 workers)") == 1, "one backend for both batches"
    lines = out.stdout.splitlines()
    first_batch_done = max(i for i, line in enumerate(lines) if "#0 done" in line or "#1 done" in line)
    assert first_batch_done < next(i for i, line in enumerate(lines) if "#2 start" in line), "batch mode"
    assert "#3 done" in out.stdout
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    assert "name: optuna" in results.read_text()


def _start(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "HPO_DEBUG"}
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=tmp_path,
        env={**env, "KERAS_HOME": str(tmp_path / "keras")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_finished_trial(driver: subprocess.Popen[str], tmp_path: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if any(e["event"] == "finish" for e in _events(tmp_path)):
            return
        time.sleep(0.2)
    raise AssertionError("no trial finished before the interruption")


def _check_one_study_in_one_parent_run(tmp_path: Path, n_trials: int) -> None:
    assert [t.state for t in _study(tmp_path).trials] == [TrialState.COMPLETE] * n_trials
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("hpo")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, "the resumed sweep logs into the same parent run"
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(int(r.data.tags["hpo.trial_number"]) for r in children) == list(range(n_trials))
    assert {r.info.status for r in runs} == {"FINISHED"}, "no run is left RUNNING, KILLED or duplicated"
    assert {r.data.tags["hpo.optuna_state"] for r in children} == {"COMPLETE"}
    assert parents[0].data.tags["hpo.study_name"] == _study(tmp_path).study_name


def test_a_study_interrupted_by_ctrl_c_resumes_to_its_total(run_hpo: RunHPO, tmp_path: Path) -> None:
    args = ["-m", "hydra.sweeper.n_trials=4", "launcher.workers=2", "trainer.max_epochs=3", *TINY]
    driver = _start(tmp_path, args)
    _wait_for_a_finished_trial(driver, tmp_path)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-2000:]
    done = sum(t.state == TrialState.COMPLETE for t in _study(tmp_path).trials)
    assert 1 <= done < 4

    out = run_hpo(args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming study '{_study(tmp_path).study_name}'" in out.stdout
    assert "4 of 4 trials completed, 0 failed" in out.stdout
    _check_one_study_in_one_parent_run(tmp_path, 4)

    again = run_hpo(args)
    assert again.returncode == 0
    assert "already has 4 of 4 trials; raise hydra.sweeper.n_trials" in again.stdout


def test_a_study_whose_driver_was_killed_resumes(run_hpo: RunHPO, tmp_path: Path) -> None:
    args = ["-m", "hydra.sweeper.n_trials=4", "launcher.workers=2", "trainer.max_epochs=3", *TINY]
    driver = _start(tmp_path, args)
    _wait_for_a_finished_trial(driver, tmp_path)
    jobs = _descendants(driver.pid)
    driver.kill()
    driver.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while [pid for pid in jobs if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in jobs if _running(pid)], "the local backend's jobs end with their driver"
    assert any(t.state == TrialState.RUNNING for t in _study(tmp_path).trials)

    out = run_hpo(args)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "interrupted (run again)" in out.stdout
    _check_one_study_in_one_parent_run(tmp_path, 4)
