"""Builds, compiles and trains a model under a distribution strategy, keeping its best epoch.

The model is built by a callable that ``fit`` calls inside ``strategy.scope()``, so a model built
outside the scope (a source of collective shape mismatches on several GPUs) cannot happen.

Batch and learning rate on several replicas: with ``trainer.scale_batch_with_replicas`` (default)
the global batch is ``batch_size x replicas`` and the learning rate ``learning_rate x replicas``
(the linear scaling rule), so each replica sees ``batch_size`` examples and the per-example step
matches the one-device run; without it both are used as given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hpo.core.schema import TrainerConf
from worker.stopping import StopRequest


@dataclass
class FitResult:
    """What training produced: the model at its best epoch (by the monitored metric), history, timings."""

    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    best_value: float
    epochs_run: int
    global_batch: int
    learning_rate: float
    fit_s: float


class _KeepBest(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the best objective, so the kept model matches the score."""

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


class StopOnRequest(keras.callbacks.Callback):
    """Ends training at the first batch end after ``stop`` is set, by raising ``TrialStopped``.

    Raising, rather than setting ``model.stop_training``, skips the validation pass and the epoch end Keras
    would still run for the partial epoch, so a stopped trial logs only whole epochs and leaves within
    one batch. A train batch that began after the request counts in ``batches_after_stop``; the whole
    epochs trained before the stop in ``epochs``.
    """

    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop = stop
        self.began = 0.0
        self.epochs = 0

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.began = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.stop.is_set():
            requested = self.stop.requested_at
            raise self.stop.stopped(int(requested is not None and self.began >= requested), self.epochs)

    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.stop.check(self.epochs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs = epoch + 1


def pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> tf.data.Dataset:
    """An in-memory ``tf.data`` pipeline: cached, reshuffled each epoch when seeded (training), prefetched."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit(
    build: Callable[[], keras.Model],
    data: Any,
    cfg: TrainerConf,
    *,
    seed: int,
    monitor: str,
    maximize: bool,
    strategy: tf.distribute.Strategy | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Build and compile the model inside the strategy's scope, train it, restore its best epoch."""
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    scale = replicas if cfg.scale_batch_with_replicas else 1
    global_batch, learning_rate = cfg.batch_size * scale, cfg.learning_rate * scale
    with strategy.scope():
        model = build()
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    keep_best = _KeepBest(monitor, maximize)
    stops: list[keras.callbacks.Callback] = []
    if cfg.early_stopping:
        stops.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience))
    started = time.perf_counter()
    history = model.fit(
        pipeline(data.x_train, data.y_train, global_batch, seed),
        validation_data=pipeline(data.x_val, data.y_val, global_batch, None),
        epochs=cfg.max_epochs,
        callbacks=[keep_best, *stops, *callbacks],
        shuffle=False,
        verbose=0,
    )
    fit_s = time.perf_counter() - started
    if keep_best.weights is not None:
        model.set_weights(keep_best.weights)
    curves = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    values = curves.get(monitor, [])
    return FitResult(
        model=model,
        history=curves,
        best_epoch=keep_best.best_epoch,
        best_value=values[keep_best.best_epoch] if keep_best.best_epoch >= 0 else math.nan,
        epochs_run=len(values),
        global_batch=global_batch,
        learning_rate=learning_rate,
        fit_s=fit_s,
    )
