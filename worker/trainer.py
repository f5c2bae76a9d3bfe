"""Trains a compiled-on-demand Keras model on a ``tf.data`` pipeline and keeps its best epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hpo.schema import TrainerConf


@dataclass
class FitResult:
    """What training produced: per-epoch history, the best epoch by the objective, and timings."""

    history: dict[str, list[float]]
    best_epoch: int
    objective: float
    fit_s: float


class _KeepBest(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the best objective, so the logged model matches the score."""

    def __init__(self, monitor: str, maximize: bool) -> None:
        super().__init__()
        self.monitor = monitor
        self.sign = 1.0 if maximize else -1.0
        self.best = -math.inf
        self.best_epoch = -1
        self.weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float((logs or {}).get(self.monitor, math.nan))
        if math.isfinite(value) and self.sign * value > self.best:
            self.best, self.best_epoch = self.sign * value, epoch
            self.weights = self.model.get_weights()


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> tf.data.Dataset:
    """Batches in memory arrays; shuffles each epoch when a seed is given (training data)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit(
    model: keras.Model,
    data: Any,
    cfg: TrainerConf,
    *,
    seed: int,
    objective: str,
    maximize: bool,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Compile ``model``, train it for ``cfg.max_epochs`` and restore the weights of its best epoch."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    keep_best = _KeepBest(objective, maximize)
    started = time.perf_counter()
    history = model.fit(
        pipeline(data.x_train, data.y_train, cfg.batch_size, seed),
        validation_data=pipeline(data.x_val, data.y_val, cfg.batch_size, None),
        epochs=cfg.max_epochs,
        callbacks=[keep_best, *callbacks],
        shuffle=False,
        verbose=0,
    )
    fit_s = time.perf_counter() - started
    if keep_best.weights is not None:
        model.set_weights(keep_best.weights)
    values = [float(v) for v in history.history.get(objective, [])]
    best = values[keep_best.best_epoch] if keep_best.best_epoch >= 0 else math.nan
    return FitResult(
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        best_epoch=keep_best.best_epoch,
        objective=best,
        fit_s=fit_s,
    )
