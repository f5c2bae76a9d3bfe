"""Training throughput of the real input pipeline against the same model fed from device tensors.

The ceiling feeds one batch that already sits in device memory, repeated, so the input side costs
nothing; the pipeline figure is ``worker.trainer.pipeline`` as every trial uses it. Their ratio says
how much of the device the input pipeline leaves on the table.
"""

from __future__ import annotations

import time
from typing import Any

from hydra import compose, initialize_config_dir

from hpo.core.schema import register_configs, validate
from hpo.driver.cli import CONF_DIR


def _config(dataset: str) -> Any:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose(config_name="config", overrides=[f"dataset={dataset}"]))


def _samples_per_s(model: Any, data: Any, steps: int, batch_size: int, epochs: int) -> float:
    # warm-up: tracing and first allocations stay out of the timing
    model.fit(data, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0)
    started = time.perf_counter()
    model.fit(data, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    return steps * batch_size * epochs / (time.perf_counter() - started)


def measure(dataset: str, batch_size: int, epochs: int, rounds: int, mixed_precision: bool) -> dict[str, Any]:
    """Samples per second of the real pipeline and of the in-memory ceiling, and their ratio.

    The model trains as a trial's does: on every visible GPU (MirroredStrategy when several, batch
    ``batch_size`` per replica), in mixed precision when asked for and supported.
    """
    cfg = _config(dataset)

    import keras
    import tensorflow as tf

    from worker.datasets import load_dataset
    from worker.distribution import prepare_devices
    from worker.models import build_model
    from worker.trainer import pipeline

    gpus = len(tf.config.list_physical_devices("GPU"))
    strategy, devices = prepare_devices(gpus_expected=gpus, mixed_precision=mixed_precision)
    batch = batch_size * strategy.num_replicas_in_sync
    data = load_dataset(cfg.dataset, split_seed=cfg.seed)
    steps = len(data.x_train) // batch
    with strategy.scope():
        model = build_model(cfg.model, data.input_shape, data.num_classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    real = pipeline(data.x_train[: steps * batch], data.y_train[: steps * batch], batch, seed=0)
    resident = tf.data.Dataset.from_tensors(
        (tf.constant(data.x_train[:batch]), tf.constant(data.y_train[:batch]))
    )
    # Alternating rounds, best of each: other load on the machine slows a round, it never speeds one up.
    ceiling = throughput = 0.0
    for _ in range(rounds):
        ceiling = max(ceiling, _samples_per_s(model, resident.repeat(), steps, batch, epochs))
        throughput = max(throughput, _samples_per_s(model, real.repeat(), steps, batch, epochs))
    return {
        "dataset": dataset,
        "batch_size": batch,
        "epochs": epochs,
        "rounds": rounds,
        "device": f"{gpus} GPU" if gpus else "CPU",
        "replicas": strategy.num_replicas_in_sync,
        "mixed_precision": devices.mixed_precision,
        "throughput": throughput,
        "ceiling": ceiling,
        "ratio": throughput / ceiling,
    }
