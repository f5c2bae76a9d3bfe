"""Per-epoch progress of a trial, sent to the driver through RunPod's progress updates."""

from __future__ import annotations

from typing import Any

import keras


class ProgressReporter(keras.callbacks.Callback):
    """Reports ``epoch k of n`` and the current validation accuracy after every epoch."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__()
        self.job = job

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import runpod

        logs = logs or {}
        update: dict[str, Any] = {"epoch": epoch + 1, "epochs": self.params.get("epochs")}
        if "val_accuracy" in logs:
            update["val_accuracy"] = float(logs["val_accuracy"])
        runpod.serverless.progress_update(self.job, update)
