"""Which devices a trial trains on: every visible GPU (MirroredStrategy when several), else the CPU."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from hpo.core.errors import DeviceError

# the GPUs each RunPod worker must see, set in the endpoint's template by deploy; unset or 0: no check
GPUS_ENV = "HPO_GPUS_PER_WORKER"

log = logging.getLogger(__name__)


@dataclass
class DeviceReport:
    """What the trial found and chose, for the record and for the mismatch warning."""

    gpus_expected: int
    gpus_seen: int
    replicas: int
    mixed_precision: bool
    warning: str | None


def prepare_devices(
    gpus_expected: int, mixed_precision: bool, require_gpus: bool = False
) -> tuple[tf.distribute.Strategy, DeviceReport]:
    """Pick the strategy for the GPUs this worker sees and set the process-wide float policy.

    With ``require_gpus`` (a RunPod worker, billed for its GPUs) fewer GPUs than expected is an error, so
    the trial runs again on a sound worker instead of training on the CPU; otherwise it is a warning.

    GPU memory growth is switched on first, so trials sharing a card never fight over its memory.
    Float16 compute is used only when asked for and every GPU has tensor cores (compute capability
    7.0 or more); the policy is set (or reset to float32) before every trial's model is built.

    Raises:
        DeviceError: ``require_gpus`` and this worker sees fewer GPUs than ``gpus_expected``.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if require_gpus and len(gpus) < gpus_expected:
        raise DeviceError(
            f"this worker sees {len(gpus)} GPU(s) but the hardware profile promises {gpus_expected}: "
            "its GPUs are missing or unusable (driver, CUDA version); the trial goes to another worker"
        )
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


def check_gpus() -> None:
    """The worker's RunPod fitness check: TensorFlow sees at least ``$HPO_GPUS_PER_WORKER`` GPUs.

    A failing check ends the worker before it takes a job, so no trial lands on a worker that cannot
    use its GPUs.

    Raises:
        DeviceError: TensorFlow sees fewer GPUs than the template promises.
    """
    expected = int(os.environ.get(GPUS_ENV) or 0)
    seen = len(tf.config.list_physical_devices("GPU"))
    if seen < expected:
        raise DeviceError(
            f"TensorFlow sees {seen} GPU(s) but {GPUS_ENV}={expected}: the worker's GPUs are missing or "
            "unusable (check the driver's CUDA version against the endpoint's minimum and the image's "
            "TensorFlow build)"
        )
