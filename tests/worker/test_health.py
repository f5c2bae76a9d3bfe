"""Tests for worker.health: small models with one known pathology each; the matching component flags it
while a healthy control passes."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest

from hpo.core.schema import HealthWeights
from worker.health import COMPONENTS, HealthReport, assess, blend

WEIGHTS = HealthWeights()
FEATURES, CLASSES = 8, 3


def linear_task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable task: the class is the argmax of a fixed linear map of Gaussian inputs."""
    x = np.random.default_rng(seed).normal(size=(n, FEATURES)).astype("float32")
    projection = np.random.default_rng(0).normal(size=(FEATURES, CLASSES))
    return x, np.argmax(x @ projection, axis=1)


def compiled(model: keras.Model, optimizer: Any = "adam") -> keras.Model:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def mlp(hidden: int = 16, **dense: Any) -> keras.Model:
    inputs = keras.Input((FEATURES,))
    x = keras.layers.Dense(hidden, activation="relu", name="hidden", **dense)(inputs)
    return compiled(keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="out")(x)))


def checked(report: HealthReport) -> HealthReport:
    """The report, after checking that every component and the score lie in [0, 1]."""
    assert tuple(report.components) == COMPONENTS
    assert all(0.0 <= v <= 1.0 for v in report.components.values()), report.components
    assert 0.0 <= report.score <= 1.0
    return report


@pytest.fixture(scope="module")
def control() -> dict[str, Any]:
    """A small ReLU MLP trained well on a learnable task: the healthy reference."""
    keras.utils.set_random_seed(0)
    x_train, y_train = linear_task(400, seed=1)
    x_val, y_val = linear_task(200, seed=2)
    model = mlp(32)
    fitted = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=15, batch_size=32, verbose=0)
    history = fitted.history
    report = checked(assess(model, history, x_train[:128], y_train[:128], x_val[:128], WEIGHTS))
    return {"model": model, "history": history, "x": x_train[:128], "y": y_train[:128], "report": report}


def test_healthy_control_scores_high_everywhere(control: dict[str, Any]) -> None:
    report = control["report"]
    assert all(v > 0.8 for v in report.components.values()), (report.components, report.measurements)
    assert report.measurements["dead_units.relu_units"] == 32
    assert report.measurements["gradients.layers"] == 2
    assert report.measurements["gradients.vanishing_layers"] == 0


def test_relus_that_never_fire_are_dead(control: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    model = mlp(16, bias_initializer=keras.initializers.Constant(-100.0))
    report = checked(assess(model, control["history"], control["x"], control["y"], control["x"], WEIGHTS))
    assert report.components["dead_units"] == 0.0
    assert report.measurements["dead_units.fraction.hidden"] == 1.0
    # a dead layer gets no gradient either
    assert report.measurements["gradients.norm.hidden"] == 0.0
    assert report.components["gradients"] == 0.5
    assert control["report"].components["dead_units"] > 0.9


def test_dead_units_count_channels_and_skip_non_relu_activations() -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
    x = keras.layers.Activation("relu", name="act_1")(conv(inputs))
    x = keras.layers.Activation("tanh", name="act_2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, activation="elu", name="dense_elu")(x)
    x = keras.layers.Dense(6, activation="relu6", name="dense_relu6")(x)
    x = keras.layers.LeakyReLU(name="leaky")(x)
    model = compiled(keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x)))
    kernel, _ = conv.get_weights()
    conv.set_weights([kernel, np.array([0.0, 0.0, -100.0, -100.0], dtype="float32")])
    x_probe = np.random.default_rng(0).normal(size=(32, 6, 6, 2)).astype("float32")
    history = {"loss": [1.0], "accuracy": [0.5], "val_loss": [1.0], "val_accuracy": [0.5]}
    report = checked(assess(model, history, x_probe, np.zeros(32, int), x_probe, WEIGHTS))
    assert report.measurements["dead_units.fraction.act_1"] == 0.5  # 2 of 4 channels never fire
    assert report.measurements["dead_units.relu_units"] == 4 + 6  # act_1 channels + relu6 units only
    assert "dead_units.fraction.act_2" not in report.measurements
    assert "dead_units.fraction.leaky" not in report.measurements


def test_model_without_relu_units_scores_full_dead_units(control: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,))
    x = keras.layers.Dense(8, activation="tanh")(inputs)
    model = compiled(keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x)))
    report = checked(assess(model, control["history"], control["x"], control["y"], control["x"], WEIGHTS))
    assert report.components["dead_units"] == 1.0
    assert report.measurements["dead_units.relu_units"] == 0


def test_diverging_learning_rate_flags_weights_and_gradients(control: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(64, FEATURES)).astype("float32") * 100, rng.integers(0, CLASSES, 64)
    model = mlp(16)
    compiled(model, keras.optimizers.SGD(learning_rate=1e6))
    fitted = model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=16, verbose=0)
    report = checked(assess(model, fitted.history, x, y, x, WEIGHTS))
    assert report.measurements["weight_health.nonfinite_tensors"] > 0
    assert report.components["weight_health"] == 0.0
    assert report.measurements["gradients.exploding_layers"] == 2  # non-finite norms count as exploding
    assert report.components["gradients"] == 0.0
    assert report.components["convergence"] == report.components["overfitting"] == 0.0  # NaN losses
    assert control["report"].components["weight_health"] == 1.0
    assert control["report"].components["gradients"] == 1.0


def test_huge_weights_are_penalised_per_tensor(control: dict[str, Any]) -> None:
    model = control["model"]
    saved = model.get_weights()
    try:
        model.set_weights([saved[0] * 1e5, *saved[1:]])
        report = checked(assess(model, control["history"], control["x"], control["y"], control["x"], WEIGHTS))
    finally:
        model.set_weights(saved)
    assert report.measurements["weight_health.large_tensors"] == 1
    assert report.components["weight_health"] == pytest.approx(0.75)  # 1 of 4 tensors


def test_memorising_model_overfits(control: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    x_train, y_train = rng.normal(size=(30, 20)).astype("float32"), rng.integers(0, 10, 30)
    x_val, y_val = rng.normal(size=(100, 20)).astype("float32"), rng.integers(0, 10, 100)
    inputs = keras.Input((20,))
    x = keras.layers.Dense(256, activation="relu")(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    model = compiled(keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)))
    fitted = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=100, batch_size=30, verbose=0)
    report = checked(assess(model, fitted.history, x_train, y_train, x_val, WEIGHTS))
    assert report.measurements["overfitting.accuracy_gap"] > 0.5
    assert report.components["overfitting"] < 0.1
    assert control["report"].components["overfitting"] > 0.9


def curves(val_loss: list[float]) -> dict[str, list[float]]:
    """A history whose only interesting curve is val_loss (no train/validation gap)."""
    return {
        "loss": val_loss,
        "accuracy": [0.9] * len(val_loss),
        "val_loss": val_loss,
        "val_accuracy": [0.9] * len(val_loss),
    }


@pytest.mark.parametrize(
    ("val_loss", "low"),
    [
        ([0.5, 0.6, 0.75, 0.9, 1.1], True),  # rising
        ([1.0, 2.0, 0.8, 2.5, 0.9], True),  # noisy
        ([1.0, 0.8, 0.65, 0.55, 0.5], False),  # smoothly falling
        ([0.30, 0.12, 0.09, 0.075, 0.07], False),  # falling fast, then levelling off
        ([0.5, 3.0, 0.2, 1.0, 0.8, 0.6, 0.5, 0.45], False),  # only the last 5 epochs count
        ([0.5, 0.5, 0.5, 0.5], False),  # converged plateau
    ],
)
def test_convergence_flags_rising_or_noisy_validation_loss(
    control: dict[str, Any], val_loss: list[float], low: bool
) -> None:
    c = control
    report = checked(assess(c["model"], curves(val_loss), c["x"], c["y"], c["x"], WEIGHTS))
    assert (report.components["convergence"] < 0.2) if low else (report.components["convergence"] > 0.9)


def test_convergence_is_neutral_when_short_and_zero_on_nan(control: dict[str, Any]) -> None:
    c = control
    short = checked(assess(c["model"], curves([1.0, 0.5]), c["x"], c["y"], c["x"], WEIGHTS))
    assert short.components["convergence"] == 0.5
    assert "convergence.slope" not in short.measurements
    broken = checked(assess(c["model"], curves([1.0, 0.8, math.nan]), c["x"], c["y"], c["x"], WEIGHTS))
    assert broken.components["convergence"] == 0.0
    assert broken.components["overfitting"] == 0.0


def test_assess_needs_the_training_curves(control: dict[str, Any]) -> None:
    c = control
    with pytest.raises(ValueError, match="val_loss"):
        assess(c["model"], {"loss": [1.0], "accuracy": [0.5]}, c["x"], c["y"], c["x"], WEIGHTS)


def test_blend_is_the_documented_weighted_sum() -> None:
    assert blend(0.8, 0.5, HealthWeights(accuracy=0.7)) == pytest.approx(0.7 * 0.8 + 0.3 * 0.5)
    assert blend(0.8, 0.5, HealthWeights(accuracy=1.0)) == pytest.approx(0.8)
    assert blend(0.8, 0.5, HealthWeights(accuracy=0.0)) == pytest.approx(0.5)


def test_score_normalises_weights_and_zero_weight_drops_a_component(control: dict[str, Any]) -> None:
    keras.utils.set_random_seed(0)
    dead = mlp(16, bias_initializer=keras.initializers.Constant(-100.0))
    c = control

    def score(**weights: float) -> HealthReport:
        return checked(assess(dead, c["history"], c["x"], c["y"], c["x"], HealthWeights(**weights)))

    equal = score()
    assert equal.score == pytest.approx(np.mean(list(equal.components.values())))
    assert score(**{k: 3.0 for k in COMPONENTS}).score == pytest.approx(equal.score)
    without_dead = score(dead_units=0.0)
    others = [v for k, v in without_dead.components.items() if k != "dead_units"]
    assert without_dead.score == pytest.approx(np.mean(others))
    assert without_dead.score > equal.score
    only_dead = score(**{k: 0.0 for k in COMPONENTS if k != "dead_units"})
    assert only_dead.score == pytest.approx(only_dead.components["dead_units"]) == 0.0
