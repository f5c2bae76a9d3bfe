"""``python -m hpo.bench e2e``: hpo's whole sweep command against KerasTuner, and hpo's breakdown of it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from hpo.bench import e2e
from hpo.bench.e2e import breakdown, first_trial, read_events
from hpo.driver.live import EventLog
from tests.conftest import REPO_ROOT
from tests.hpo.reports.fake_sweep import new_store


def test_the_breakdown_reads_the_event_log_and_the_first_trials_run(tmp_path: Path) -> None:
    started = time.time()
    events = EventLog(tmp_path / "sweep")
    events.mark("study")
    for number in (0, 1):
        events.write("submit", number, resumed=False)
    uri = new_store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("e2e")
    parent = client.create_run(experiment).info.run_id
    first = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    epoch_ms = int(time.time() * 1000) + 50
    client.log_batch(first, metrics=[Metric("val_accuracy", 0.5, epoch_ms, 0)])
    client.create_run(experiment, tags={"mlflow.parentRunId": parent})
    events.write("finish", 0, state="COMPLETE", value=0.9)
    events.write("finish", 1, state="FAIL", value=None)
    events.write("finish", 2, state="PRUNED", value=None)
    events.write("finish", 3, state="COMPLETE", value=0.8)
    ended = time.time() + 0.5

    logged = read_events(tmp_path / "sweep")
    run_start, first_epoch = first_trial(uri)
    figures = breakdown(started, ended, logged, run_start, first_epoch)

    times = {(e["event"], e.get("trial")): e["t"] for e in logged}
    assert first_epoch == epoch_ms / 1000
    assert run_start == client.get_run(first).info.start_time / 1000
    assert (figures["best"], figures["completed"], figures["pruned"], figures["finished"]) == (0.9, 2, 1, 4)
    assert figures["improvements"] == [[pytest.approx(times["finish", 0] - started, abs=1e-3), 0.9]]
    assert figures["wall_s"] == pytest.approx(ended - started, abs=1e-3)
    assert figures["to_study_s"] == pytest.approx(times["study", None] - started, abs=1e-3)
    assert figures["to_first_submit_s"] == pytest.approx(times["submit", 0] - started, abs=1e-3)
    assert figures["to_first_epoch_s"] == pytest.approx(first_epoch - started, abs=1e-3)
    assert figures["trials_s"] == pytest.approx(times["finish", 3] - times["submit", 0], abs=1e-3)
    assert figures["after_last_s"] == pytest.approx(ended - times["finish", 3], abs=1e-3)


def test_a_pruner_option_brings_its_settings_to_hpos_command(tmp_path: Path) -> None:
    case = e2e.Case(8, 5, 2, seed=1, pruner="successive_halving,min_resource=2,bootstrap_count=1")
    command = e2e.hpo_command(case, tmp_path)
    assert command[-3:] == [
        "hydra/sweeper/pruner=successive_halving",
        "hydra.sweeper.pruner.min_resource=2",
        "hydra.sweeper.pruner.bootstrap_count=1",
    ]
    assert "seed=1" in command and "hydra/sweeper/pruner=none" in e2e.hpo_command(
        e2e.Case(8, 5, 2, seed=1, pruner="none"), tmp_path
    )


def test_a_pruned_sweep_is_timed_to_the_unpruned_sweeps_best() -> None:
    unpruned = {"best": 0.99, "wall_s": 100.0}
    pruned = {"improvements": [[10.0, 0.9], [30.0, 0.984], [45.0, 0.986], [50.0, 0.995]]}
    assert e2e.to_reference_best(pruned, unpruned) == {
        "reference_best": 0.99,
        "seconds": 45.0,
        "of_reference_wall": 0.45,
    }
    short = e2e.to_reference_best({"improvements": [[10.0, 0.9]]}, unpruned)
    assert short["seconds"] is None and short["of_reference_wall"] is None
    result = {**e2e._shape(e2e.Case(30, 15, 2, 0, "hyperband")), "hpo": _figures(), "kerastuner": None}
    assert "never" in e2e.describe({**result, "to_unpruned_best": short})[-1]


def _figures() -> dict[str, object]:
    return {
        "wall_s": 60.0,
        "best": 0.9,
        "pruned": 20,
        "reports_complete": True,
        "cpu_s": 90.0,
        "improvements": [],
    }


@pytest.mark.slow
@pytest.mark.e2e
def test_a_tiny_comparison_prints_both_sides() -> None:
    command = [sys.executable, "-m", "hpo.bench", "e2e", "--trials", "2", "--epochs", "1", "--json"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (result,) = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    hpo, tuner = result["hpo"], result["kerastuner"]
    assert (hpo["completed"], hpo["finished"]) == (2, 2) and hpo["reports_complete"]
    assert 0 < hpo["to_study_s"] < hpo["to_first_submit_s"] < hpo["to_first_trial_s"] < hpo["wall_s"]
    assert 0 < hpo["best"] <= 1 and 0 < tuner["best"] <= 1
    space = yaml.safe_load((REPO_ROOT / "conf" / "search_space" / "cnn.yaml").read_text())
    assert tuner["searched"] == sorted(space), "KerasTuner searches the sweep's own space"
    assert result["wall_ratio"] == pytest.approx(hpo["wall_s"] / tuner["wall_s"], abs=1e-3)
