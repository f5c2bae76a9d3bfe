"""Process-level set-up of a trial: its seed, TensorFlow's thread pools and determinism."""

from __future__ import annotations

import contextlib
import os


def cpu_threads(workers: int) -> int:
    """This trial's share of the machine's cores when ``workers`` trials run side by side."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


def configure(seed: int, threads: int) -> None:
    """Seed every generator and make TensorFlow's CPU ops deterministic, so a re-run repeats its result."""
    import keras
    import tensorflow as tf

    # RuntimeError: TensorFlow already started in this process (an earlier trial): its pools stay as they are
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    keras.backend.clear_session()  # an earlier trial in this process leaves no graph or layer names behind
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
