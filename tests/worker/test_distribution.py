"""Training under a distribution strategy: MirroredStrategy over two logical CPU devices stands in for
two GPUs, as CI has none."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from hpo.core.errors import DeviceError
from hpo.core.schema import CNNConf, DatasetConf, DataSource, Modality, TrainerConf
from worker.datasets import load_dataset
from worker.distribution import GPUS_ENV, check_gpus, prepare_devices
from worker.models import build_model
from worker.trainer import fit

DIGITS = DatasetConf(
    name="digits", modality=Modality.image, source=DataSource.sklearn, input_shape=[8, 8, 1], num_classes=10
)

MIRRORED_VS_SINGLE = textwrap.dedent(
    """
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from hpo.core.schema import CNNConf, DatasetConf, DataSource, Modality, TrainerConf
    from worker import runtime
    from worker.datasets import load_dataset
    from worker.models import build_model
    from worker.trainer import fit

    digits = DatasetConf(name="digits", modality=Modality.image, source=DataSource.sklearn,
                         input_shape=[8, 8, 1], num_classes=10)
    data = load_dataset(digits, split_seed=0)
    model_cfg = CNNConf(conv_layers=1, filters=8, dense_units=16, dropout=0.0)
    out = {}
    for name, strategy in [("single", tf.distribute.OneDeviceStrategy("/cpu:0")),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
        runtime.configure(seed=7, threads=1)
        for scale in (False, True):
            trainer = TrainerConf(max_epochs=3, batch_size=32, learning_rate=0.003, early_stopping=False,
                                  scale_batch_with_replicas=scale)
            result = fit(lambda: build_model(model_cfg, (8, 8, 1), 10), data, trainer, seed=7,
                         monitor="val_accuracy", maximize=True, strategy=strategy)
            out[f"{name}-{scale}"] = {"loss": result.history["loss"],
                                      "replicas": strategy.num_replicas_in_sync,
                                      "global_batch": result.global_batch, "lr": result.learning_rate}
            runtime.configure(seed=7, threads=1)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_over_two_devices_follows_the_single_device_loss_curve() -> None:
    out = subprocess.run(
        [sys.executable, "-c", MIRRORED_VS_SINGLE], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    single, mirrored = result["single-False"], result["mirrored-False"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["global_batch"] == single["global_batch"] == 32
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=2e-3)
    assert result["mirrored-True"]["global_batch"] == 64, "batch_size is per replica when scaling"
    assert result["mirrored-True"]["lr"] == pytest.approx(0.006), "linear scaling rule"
    assert result["single-True"]["global_batch"] == 32


def test_the_model_is_built_inside_the_strategy_scope() -> None:
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    seen: list[object] = []

    def build() -> keras.Model:
        seen.append(tf.distribute.get_strategy())
        return build_model(CNNConf(conv_layers=1, filters=4, dense_units=0), (8, 8, 1), 10)

    data = load_dataset(DIGITS, split_seed=0)
    fit(
        build,
        data,
        TrainerConf(max_epochs=1),
        seed=0,
        monitor="val_accuracy",
        maximize=True,
        strategy=strategy,
    )
    assert seen == [strategy]


def test_early_stopping_ends_a_trial_that_stops_improving() -> None:
    data = load_dataset(DIGITS, split_seed=0)
    rng = np.random.default_rng(0)
    noise = type(data)(
        data.x_train,
        rng.integers(0, 10, len(data.y_train)).astype("int32"),
        data.x_val,
        rng.integers(0, 10, len(data.y_val)).astype("int32"),
        data.x_test,
        data.y_test,
        10,
    )
    trainer = TrainerConf(max_epochs=40, batch_size=16, learning_rate=0.01, patience=2)
    result = fit(
        lambda: build_model(CNNConf(filters=32, dense_units=128, dropout=0.0), (8, 8, 1), 10),
        noise,
        trainer,
        seed=0,
        monitor="val_accuracy",
        maximize=True,
    )
    assert result.epochs_run < 40, "random labels: the validation loss stops improving early"
    assert len(result.history["val_loss"]) == result.epochs_run


def test_cpu_only_worker_reports_the_gpu_mismatch_and_keeps_float32() -> None:
    strategy, report = prepare_devices(gpus_expected=2, mixed_precision=True)
    assert report.gpus_seen == 0 and report.replicas == 1
    assert report.mixed_precision is False
    assert keras.mixed_precision.global_policy().name == "float32"
    assert report.warning is not None and "gpus_per_worker=2 but this worker sees 0 GPU(s)" in report.warning
    assert prepare_devices(gpus_expected=0, mixed_precision=False)[1].warning is None


def test_a_worker_that_must_have_its_gpus_refuses_to_train_without_them() -> None:
    with pytest.raises(DeviceError, match="sees 0 GPU\\(s\\) but the hardware profile promises 2"):
        prepare_devices(gpus_expected=2, mixed_precision=False, require_gpus=True)
    assert prepare_devices(gpus_expected=0, mixed_precision=False, require_gpus=True)[1].gpus_seen == 0


def test_the_fitness_check_fails_a_worker_short_of_its_templates_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(GPUS_ENV, "2")
    with pytest.raises(DeviceError, match=f"TensorFlow sees 0 GPU\\(s\\) but {GPUS_ENV}=2"):
        check_gpus()
    monkeypatch.setenv(GPUS_ENV, "0")
    check_gpus()
    monkeypatch.delenv(GPUS_ENV)
    check_gpus()
