"""One trial end to end inside this process: digits, a tiny CNN, a real SQLite MLflow store."""

from __future__ import annotations

import copy
import pickle
import signal
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from hpo.core import interrupts, trial_channel
from hpo.core.code_version import code_version
from hpo.core.errors import ModelConfigError
from hpo.core.names import OPTUNA_STATE_TAG, PRUNED_EPOCH_TAG, PRUNED_TAG
from hpo.core.schema import HPOConfig
from worker.stopping import RUNPOD_STOP, StopRequest, TrialStopped
from worker.trial import TrialRequest, run_trial


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """A digits trial config as the driver sends it: resolved, with a store under tmp_path."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.structured(HPOConfig(model=None)), resolve=True)
    assert isinstance(cfg, dict)
    cfg["dataset"] = {
        "name": "digits",
        "modality": "image",
        "source": "sklearn",
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "vocab_size": None,
        "validation_split": 0.2,
    }
    cfg["model"] = {
        "_target_": "worker.models.cnn",
        "conv_layers": 1,
        "filters": 8,
        "kernel_size": 3,
        "activation": "relu",
        "batch_norm": False,
        "dropout": 0.1,
        "dense_units": 16,
    }
    cfg["trainer"].update(max_epochs=2, batch_size=32, learning_rate=0.005)
    cfg["mlflow"].update(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment_name="unit")
    return cfg


def test_trial_logs_params_epoch_metrics_and_a_loadable_model(config: dict[str, Any], tmp_path: Path) -> None:
    result = run_trial(TrialRequest(config=config, trial_number=3, overrides=["model.filters=8"]))
    assert 0.3 < result.objective <= 1.0, "a small CNN learns digits well past chance in two epochs"
    assert result.fit_s < result.trial_s

    client = MlflowClient(config["mlflow"]["tracking_uri"])
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri()), "artifacts live beside the store"
    assert run.data.params["model.filters"] == "8"
    assert run.data.params["trainer.learning_rate"] == "0.005"
    assert run.data.tags["hpo.trial_number"] == "3"
    assert run.data.tags.get("hpo.code_version") == code_version(), "the checkout's commit, when there is one"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(result.run_id, key)
        assert [m.step for m in history] == [0, 1], key
    best = max(m.value for m in client.get_metric_history(result.run_id, "val_accuracy"))
    assert run.data.metrics["objective"] == pytest.approx(best)
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0, "the test split is scored beside the objective"
    assert run.data.metrics["epochs_run"] == 2
    assert run.data.tags["hpo.gpus_seen"] == "0"
    assert run.data.metrics["reports_s"] > 0, "the trial logs its reports (worker.reports)"
    logged = {
        a.path for folder in ("architecture", "plots") for a in client.list_artifacts(result.run_id, folder)
    }
    assert {"architecture/architecture.json", "plots/training_curves.png"} <= logged

    mlflow.set_tracking_uri(config["mlflow"]["tracking_uri"])
    model = mlflow.keras.load_model(f"runs:/{result.run_id}/model")
    from sklearn.datasets import load_digits

    x = (load_digits().images[:16] / 16.0).astype("float32")[..., None]
    probs = model.predict(x, verbose=0)
    assert probs.shape == (16, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_same_trial_number_gives_the_same_result(config: dict[str, Any]) -> None:
    first = run_trial(TrialRequest(config=config, trial_number=5))
    second = run_trial(TrialRequest(config=copy.deepcopy(config), trial_number=5))
    assert first.objective == second.objective
    assert first.run_id != second.run_id


def test_impossible_model_fails_the_trial_and_its_run(config: dict[str, Any]) -> None:
    config["model"]["conv_layers"] = 5
    with pytest.raises(ModelConfigError, match="model.conv_layers=5"):
        run_trial(TrialRequest(config=config, trial_number=0))
    runs = MlflowClient(config["mlflow"]["tracking_uri"]).search_runs(
        [mlflow.get_experiment_by_name("unit").experiment_id]
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "conv_layers=5" in runs[0].data.tags["hpo.error"]


def test_a_stop_signal_that_training_turns_into_another_error_ends_the_run_killed(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorFlow can re-raise a KeyboardInterrupt that hits it mid-trace as a TypeError; the trial was
    still stopped, not failed."""
    import keras

    class StoppedWhileTracing(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            monkeypatch.setattr(interrupts, "_received", [signal.SIGTERM])
            raise TypeError("Exception encountered when calling Dropout.call()")

    with pytest.raises(KeyboardInterrupt, match="trial 0 stopped"):
        run_trial(TrialRequest(config=config, trial_number=0, callbacks=[StoppedWhileTracing()]))
    runs = MlflowClient(config["mlflow"]["tracking_uri"]).search_runs(
        [mlflow.get_experiment_by_name("unit").experiment_id]
    )
    assert [r.info.status for r in runs] == ["KILLED"]


def test_a_trial_stopped_mid_epoch_stops_within_a_batch_and_ends_killed_unscored(
    config: dict[str, Any],
) -> None:
    """Digits in batches of 8: ~144 train batches an epoch; the stop comes during the second epoch."""
    import keras

    config["trainer"].update(max_epochs=3, batch_size=8)
    stop = StopRequest()

    class StopDuringBatch(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch, self.ended, self.batches = 0, 0, 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.epoch == 1 and batch == 5:
                stop.set()  # as RunPod's stop does, while this batch trains

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches = max(self.batches, batch + 1)
            self.ended += 1

    seen = StopDuringBatch()
    with pytest.raises(TrialStopped) as stopped:
        run_trial(TrialRequest(config=config, trial_number=0, callbacks=[seen], stop=stop))
    assert stopped.value.batches_after_stop == 0
    assert seen.batches > 100, "digits in batches of 8 gives many batches per epoch"
    assert seen.ended == seen.batches + 5, "the whole first epoch, then the second's batches 0-4 end"

    client = MlflowClient(config["mlflow"]["tracking_uri"])
    (run,) = client.search_runs([mlflow.get_experiment_by_name("unit").experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["hpo.stopped"] == RUNPOD_STOP
    assert run.data.metrics["batches_after_stop"] <= 1
    assert 0 <= run.data.metrics["stop_latency_s"] < 5
    for key in ("loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], "whole epochs only"
    assert "objective" not in run.data.metrics and "test_accuracy" not in run.data.metrics
    assert client.list_artifacts(run.info.run_id) == [], "no model, no reports after a stop"


def test_a_stop_before_training_leaves_before_the_first_batch(config: dict[str, Any]) -> None:
    stop = StopRequest()
    stop.set()
    with pytest.raises(TrialStopped) as stopped:
        run_trial(TrialRequest(config=config, trial_number=0, stop=stop))
    assert stopped.value.batches_after_stop == 0
    runs = MlflowClient(config["mlflow"]["tracking_uri"]).search_runs(
        [mlflow.get_experiment_by_name("unit").experiment_id]
    )
    assert [r.info.status for r in runs] == ["KILLED"]
    assert "loss" not in runs[0].data.metrics


def test_health_mode_blends_accuracy_with_logged_health_components(config: dict[str, Any]) -> None:
    config["mode"] = {
        "name": "health",
        "objective": "health_objective",
        "direction": "maximize",
        "weights": {
            "accuracy": 0.6,
            "overfitting": 1.0,
            "convergence": 1.0,
            "gradients": 1.0,
            "dead_units": 2.0,
            "weight_health": 1.0,
        },
    }
    config["trainer"]["max_epochs"] = 3
    result = run_trial(TrialRequest(config=config, trial_number=1))
    metrics = MlflowClient(config["mlflow"]["tracking_uri"]).get_run(result.run_id).data.metrics
    components = ("overfitting", "convergence", "gradients", "dead_units", "weight_health")
    assert all(0.0 <= metrics[f"health.{c}"] <= 1.0 for c in components)
    assert "health.dead_units.relu_units" in metrics
    weighted = sum(metrics[f"health.{c}"] * (2.0 if c == "dead_units" else 1.0) for c in components) / 6.0
    assert metrics["health.score"] == pytest.approx(weighted)
    blend = 0.6 * metrics["best_val_accuracy"] + 0.4 * metrics["health.score"]
    assert result.objective == pytest.approx(blend)
    assert metrics["health_objective"] == pytest.approx(blend) == metrics["objective"]


def test_a_pruned_trial_stops_after_the_epoch_it_reported_and_ends_finished_tagged_pruned(
    config: dict[str, Any],
) -> None:
    """The runner's sink prunes on the first epoch's report, as a driver's pruner would; the trial keeps
    that epoch's curves and nothing later."""
    config["trainer"].update(max_epochs=4)
    reports: list[trial_channel.Progress] = []

    def prune_at_first_epoch(progress: trial_channel.Progress) -> None:
        reports.append(progress)
        trial_channel.prune()

    trial_channel.set_sink(prune_at_first_epoch)
    try:
        with pytest.raises(TrialStopped) as stopped:
            run_trial(TrialRequest(config=config, trial_number=0))
    finally:
        trial_channel.set_sink(None)
        trial_channel.reset()
    assert stopped.value.pruned and stopped.value.epochs == 1
    assert pickle.loads(pickle.dumps(stopped.value)).epochs == 1, "a local slot sends the stop back pickled"

    client = MlflowClient(config["mlflow"]["tracking_uri"])
    (run,) = client.search_runs([mlflow.get_experiment_by_name("unit").experiment_id])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags[PRUNED_TAG], tags[PRUNED_EPOCH_TAG], tags[OPTUNA_STATE_TAG]) == ("true", "1", "PRUNED")
    (logged,) = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert logged.step == 0, "the finished epoch's curves stay, no later epoch is logged"
    assert [(r["epoch"], r["epochs"]) for r in reports] == [(1, 4)]
    assert reports[0]["objective"] == pytest.approx(logged.value) == reports[0]["metrics"]["val_accuracy"]
