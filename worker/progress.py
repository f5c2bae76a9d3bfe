"""Per-epoch progress of a trial, handed to whatever runs it (``hpo.core.trial_channel``): the driver
watches it, and its pruner decides on it."""

from __future__ import annotations

import time
from typing import Any

import keras

from hpo.core import trial_channel


class EpochProgress(keras.callbacks.Callback):
    """Reports every finished epoch: its number (1-based) of how many, the objective ``monitor`` and every
    metric Keras logged for it."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        progress: trial_channel.Progress = {
            "epoch": epoch + 1,
            "epochs": self.params.get("epochs"),
            "objective": metrics.get(self.monitor),
            "metrics": metrics,
        }
        trial_channel.report(progress)


class RunPodProgress:
    """A trial channel sink that posts each epoch as the job's RunPod progress update, with the curves so
    far (so a driver that prunes the job can log them: the stopped job's own run never comes back)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        # metric -> [[step, timestamp ms, value], ...], as ``hpo.core.run_bundle`` packs a run's metrics
        self.curves: dict[str, list[list[float]]] = {}

    def __call__(self, progress: trial_channel.Progress) -> None:
        import runpod

        now = int(time.time() * 1000)
        for key, value in progress["metrics"].items():
            self.curves.setdefault(key, []).append([progress["epoch"] - 1, now, value])
        update = {k: v for k, v in progress.items() if k != "metrics"}
        if "val_accuracy" in progress["metrics"]:
            update["val_accuracy"] = progress["metrics"]["val_accuracy"]
        runpod.serverless.progress_update(self.job, {**update, "curves": self.curves})
