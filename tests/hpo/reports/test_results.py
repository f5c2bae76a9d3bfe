"""Sweep results read from trial runs: counts, best trial and the results file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hpo.core.store import resolve_tracking_uri
from hpo.records.sweep_runs import TrialRun
from hpo.reports.results import SweepResults


def _trial(n: int, status: str, objective: float | None, **params: object) -> TrialRun:
    overrides = json.dumps([f"{k.replace('__', '.')}={v}" for k, v in params.items()])
    return TrialRun(f"run{n}", n, status, objective, overrides, None if status == "FINISHED" else "boom")


def test_best_and_counts_follow_the_direction(tmp_path: Path) -> None:
    trials = [
        _trial(0, "FINISHED", 0.5, model__filters=8),
        _trial(1, "FAILED", None),
        _trial(2, "FINISHED", 0.9, model__filters=16, model__activation="relu", trainer__learning_rate=1e-5),
    ]
    results = SweepResults("val_accuracy", "maximize", trials)
    assert results.best is trials[2]
    assert SweepResults("val_loss", "minimize", trials).best is trials[0]
    path = results.write(tmp_path, {"parent_run_id": "p"})
    written = yaml.safe_load(path.read_text())
    assert written["best_value"] == 0.9 and written["best_trial"] == 2
    assert written["best_params"] == {
        "model.filters": 16,
        "model.activation": "relu",
        "trainer.learning_rate": 1e-05,
    }, "values read as Hydra reads them, 1e-05 a float"
    assert (written["n_trials"], written["n_completed"], written["n_failed"]) == (3, 2, 1)
    assert written["mlflow"] == {"parent_run_id": "p", "best_run_id": "run2"}
    assert "2 of 3 trials completed, 1 failed; best trial #2: val_accuracy=0.9000" in results.describe()


def test_the_best_trial_shows_the_searched_parameters_only(tmp_path: Path) -> None:
    best = _trial(0, "FINISHED", 0.9, model__filters=16, trainer__max_epochs=2, dataset="digits")
    results = SweepResults("val_accuracy", "maximize", [best], searched=["model.filters"])
    assert results.describe().endswith("val_accuracy=0.9000  model.filters=16"), results.describe()
    written = yaml.safe_load(results.write(tmp_path, {}).read_text())
    assert written["best_params"] == {"model.filters": 16}, "the command's fixed overrides are not results"


def test_failed_means_what_the_reports_count_as_failed() -> None:
    no_objective = _trial(0, "FINISHED", None)
    killed = _trial(1, "KILLED", None)
    running = _trial(2, "RUNNING", None)
    results = SweepResults("val_accuracy", "maximize", [no_objective, killed, running])
    assert results.failed == [no_objective, killed], (
        "a finished run without an objective failed; one running not"
    )
    assert results.completed == []


def test_pruned_trials_are_neither_completed_nor_failed(tmp_path: Path) -> None:
    told = _trial(0, "KILLED", None)
    told.optuna_state = "PRUNED"
    # the worker ended the run pruned; the driver stopped before telling the study
    untold = TrialRun("run1", 1, "FINISHED", 0.2, "[]", None, pruned=True)
    still_running = TrialRun("run2", 2, "RUNNING", None, "[]", None, pruned=True)
    done = _trial(3, "FINISHED", 0.9, model__filters=8)
    results = SweepResults("val_accuracy", "maximize", [told, untold, still_running, done])
    assert results.pruned == [told, untold] and results.completed == [done] and results.failed == []
    assert results.best is done
    assert results.describe().startswith("1 of 4 trials completed, 2 pruned, 0 failed; best trial #3")
    written = yaml.safe_load(results.write(tmp_path, {}).read_text())
    assert (written["n_completed"], written["n_pruned"], written["n_failed"]) == (1, 2, 0)


def test_no_completed_trial_has_no_best(tmp_path: Path) -> None:
    results = SweepResults("val_accuracy", "maximize", [_trial(0, "FAILED", None)])
    assert results.best is None
    assert yaml.safe_load(results.write(tmp_path, {}).read_text())["best_value"] is None


def test_relative_stores_become_absolute(tmp_path: Path) -> None:
    assert resolve_tracking_uri("sqlite:///runs.db", tmp_path) == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_tracking_uri("sqlite:////abs/runs.db", tmp_path) == "sqlite:////abs/runs.db"
    assert resolve_tracking_uri("mlruns", tmp_path) == str(tmp_path / "mlruns")
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
