"""Tests for worker.reports: which artifacts a trial's run gets under each ``reports.plots`` policy, the
``best`` rule, the dataset inputs, and system metrics; a tiny digits CNN, a real SQLite MLflow store."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from hpo.core.schema import HPOConfig, ReportsConf, validate
from worker import plots, run_logging
from worker.datasets import load_dataset
from worker.models import build_model
from worker.reports import log_trial_reports, should_plot
from worker.scoring import score
from worker.trainer import FitResult, fit

ARCHITECTURE = {f"architecture/architecture.{ext}" for ext in ("json", "txt", "svg", "png", "html", "glb")}
PLOTS = {
    f"plots/{name}.png"
    for name in ("training_curves", "confusion_matrix", "gradient_norms", "weight_distributions")
}


def trial_config(mode: str = "simple") -> HPOConfig:
    return validate(
        {
            "dataset": {
                "name": "digits",
                "modality": "image",
                "source": "sklearn",
                "input_shape": [8, 8, 1],
                "num_classes": 10,
                "fraction": 0.5,
            },
            "model": {"_target_": "worker.models.cnn", "conv_layers": 1, "filters": 4, "dense_units": 8},
            "mode": {"name": mode, "objective": "val_accuracy" if mode == "simple" else "health_objective"},
            "trainer": {"max_epochs": 3, "batch_size": 64, "learning_rate": 0.01},
        }
    )


@pytest.fixture(scope="module")
def trained() -> tuple[FitResult, Any]:
    """A tiny CNN trained for three epochs on half of digits, and its data."""
    cfg = trial_config()
    data = load_dataset(cfg.dataset, split_seed=0)
    result = fit(
        lambda: build_model(cfg.model, data.input_shape, data.num_classes),
        data,
        cfg.trainer,
        seed=0,
        monitor="val_accuracy",
        maximize=True,
    )
    return result, data


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the module's runs (creating a store takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def report(
    store: str,
    trained: tuple[FitResult, Any],
    cfg: HPOConfig,
    objective: float,
    best: float | None,
    **kw: Any,
) -> tuple[MlflowClient, str]:
    """Run ``log_trial_reports`` in a new run of ``store``; the client and the run's id."""
    mlflow.set_tracking_uri(store)
    experiment = mlflow.set_experiment("reports")
    result, data = trained
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        log_trial_reports(result.model, result, data, cfg, objective, best, **kw)
    return MlflowClient(store), run.info.run_id


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def with_plots(cfg: HPOConfig, policy: str) -> HPOConfig:
    return dataclasses.replace(cfg, reports=ReportsConf(plots=policy))


@pytest.mark.parametrize(
    ("policy", "objective", "best", "direction", "expected"),
    [
        ("all", 0.1, 0.9, "maximize", True),
        ("none", 0.9, None, "maximize", False),
        ("best", 0.5, None, "maximize", True),
        ("best", 0.5, float("nan"), "maximize", True),
        ("best", 0.7, 0.6, "maximize", True),
        ("best", 0.6, 0.6, "maximize", False),
        ("best", 0.5, 0.6, "maximize", False),
        ("best", 0.5, 0.6, "minimize", True),
        ("best", 0.7, 0.6, "minimize", False),
    ],
)
def test_should_plot(
    policy: str, objective: float, best: float | None, direction: str, expected: bool
) -> None:
    assert should_plot(policy, objective, best, direction) is expected


def test_should_plot_rejects_unknown_policy_and_direction() -> None:
    with pytest.raises(ValueError, match="reports.plots"):
        should_plot("some", 0.5, None, "maximize")
    with pytest.raises(ValueError, match="mode.direction"):
        should_plot("best", 0.5, 0.1, "up")


def test_all_logs_architecture_plots_datasets_and_timing(store: str, trained: tuple[FitResult, Any]) -> None:
    cfg = with_plots(trial_config(), "all")
    client, run_id = report(store, trained, cfg, 0.5, 0.9)
    assert artifacts(client, run_id) == ARCHITECTURE | PLOTS
    spec = json.loads(Path(client.download_artifacts(run_id, "architecture/architecture.json")).read_text())
    model = trained[0].model
    assert [entry["name"] for entry in spec["layers"]] == [layer.name for layer in model.layers]
    assert spec["hyperparameters"] == dataclasses.asdict(cfg.model)
    run = client.get_run(run_id)
    assert 0.0 < run.data.metrics["reports_s"] < 30.0
    assert run.data.tags["hpo.plots"] == "drawn"

    data = trained[1]
    sizes = {"training": len(data.x_train), "validation": len(data.x_val), "testing": len(data.x_test)}
    inputs = run.inputs.dataset_inputs
    assert {i.dataset.name for i in inputs} == {"digits"}
    tags = [{t.key: t.value for t in i.tags} for i in inputs]
    assert {t["mlflow.data.context"]: int(t["examples"]) for t in tags} == sizes
    assert all(t["dataset.fraction"] == "0.5" for t in tags)


def test_none_logs_the_architecture_but_no_plots(store: str, trained: tuple[FitResult, Any]) -> None:
    client, run_id = report(store, trained, with_plots(trial_config(), "none"), 0.9, None)
    assert artifacts(client, run_id) == ARCHITECTURE
    assert client.get_run(run_id).data.tags["hpo.plots"] == "skipped"


def test_a_machine_without_graphviz_logs_every_architecture_artifact(
    store: str, trained: tuple[FitResult, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot`, no system binary at all
    client, run_id = report(store, trained, with_plots(trial_config(), "none"), 0.9, None)
    assert artifacts(client, run_id) == ARCHITECTURE
    svg = Path(client.download_artifacts(run_id, "architecture/architecture.svg")).read_text()
    assert all(f"{i}. {layer.name}" in svg for i, layer in enumerate(trained[0].model.layers))


@pytest.mark.parametrize(("objective", "drawn"), [(0.95, True), (0.85, False)])
def test_best_draws_only_for_a_new_best(
    store: str, trained: tuple[FitResult, Any], objective: float, drawn: bool
) -> None:
    client, run_id = report(store, trained, with_plots(trial_config(), "best"), objective, 0.9)
    assert artifacts(client, run_id) == ARCHITECTURE | (PLOTS if drawn else set())


def test_health_mode_adds_the_components_plot(store: str, trained: tuple[FitResult, Any]) -> None:
    cfg = trial_config("health")
    metrics = score(cfg.mode, *trained)
    client, run_id = report(store, trained, cfg, metrics["objective"], None, metrics=metrics)
    assert artifacts(client, run_id) == ARCHITECTURE | PLOTS | {"plots/health_components.png"}


def test_a_failing_plot_is_skipped_with_a_warning(
    store: str,
    trained: tuple[FitResult, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any) -> Path:
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, "confusion_matrix", broken)
    with caplog.at_level(logging.WARNING, logger="worker.reports"):
        client, run_id = report(store, trained, trial_config(), 0.5, None)
    assert artifacts(client, run_id) == ARCHITECTURE | PLOTS - {"plots/confusion_matrix.png"}
    assert "confusion matrix failed (RuntimeError: no ink)" in caplog.text


def test_trial_run_samples_system_metrics(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING"):
        monkeypatch.setenv(name, "")  # trial_run sets them; monkeypatch restores them afterwards
    with run_logging.trial_run(store, "system", None, "trial-0", {}, {}, system_metrics=True) as run_id:
        time.sleep(2.5)  # the first sample is logged after one 1 s interval
    metrics = MlflowClient(store).get_run(run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
