"""Which devices a trial trains on: every visible GPU (MirroredStrategy when several), else the CPU."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass
class DeviceReport:
    """What the trial found and chose, for the record and for the mismatch warning."""

    gpus_expected: int
    gpus_seen: int
    replicas: int
    mixed_precision: bool
    warning: str | None


def prepare_devices(gpus_expected: int, mixed_precision: bool) -> tuple[tf.distribute.Strategy, DeviceReport]:
    """Pick the strategy for the GPUs this worker sees and set the process-wide float policy.

    GPU memory growth is switched on first, so trials sharing a card never fight over its memory.
    Float16 compute is used only when asked for and every GPU has tensor cores (compute capability
    7.0 or more); the policy is set (or reset to float32) before every trial's model is built.
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: TensorFlow already started in this process, with growth on from an earlier trial
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    capable = bool(gpus) and all(
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (7, 0) for g in gpus
    )
    mixed = mixed_precision and capable
    if mixed_precision and not mixed:
        log.warning("trainer.mixed_precision=true needs GPUs of compute capability 7.0+; training in float32")
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    warning = None
    if len(gpus) != gpus_expected:
        warning = (
            f"hardware.gpus_per_worker={gpus_expected} but this worker sees {len(gpus)} GPU(s); "
            f"training on {strategy.num_replicas_in_sync} replica(s)"
        )
        log.warning(warning)
    return strategy, DeviceReport(gpus_expected, len(gpus), strategy.num_replicas_in_sync, mixed, warning)
