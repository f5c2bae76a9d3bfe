"""Health mode: score a trained model by how healthy its training looks, not only by its accuracy.

The trial's objective is ``blend = a * val_accuracy + (1 - a) * score`` with ``a = mode.weights.accuracy``;
``score`` is the mean of five components weighted by the other ``mode.weights`` (normalised to sum 1,
so a weight of 0 drops a component). Every component lies in [0, 1], 1 = healthy. Below,
``ramp(x, lo, hi)`` is 1 for ``x <= lo``, 0 for ``x >= hi`` and linear in between.

overfitting: at the last epoch (where training ended), ``acc_gap = accuracy - val_accuracy`` and
``loss_gap = val_loss - loss`` (nats); component = ``min(ramp(acc_gap, 0.02, 0.25), ramp(loss_gap, 0.05,
0.5))``. Keras averages train metrics over the epoch in training mode (dropout on), so gaps are often
negative; those score 1. A non-finite loss scores 0.

convergence: over the last up-to-5 epochs of val_loss, ``slope`` is the slope (per epoch) of a
least-squares line and ``noise`` the RMS residual from the closest never-rising curve (isotonic fit: 0
for any steady decrease however curved, so only bumps up count), both divided by the window's mean
val_loss; component = ``min(ramp(slope, 0, 0.1), ramp(noise, 0.02, 0.2))``: falling or flat and smooth is
1, rising by 10% of the mean per epoch or bumping by 20% of it is 0. Any non-finite loss or val_loss
scores 0; fewer than 3 epochs score a neutral 0.5 (slope and noise are then not logged).

gradients: one forward/backward pass of sparse categorical cross-entropy on a fixed training batch
(inference mode: no dropout, batch-norm moving statistics); each top-level layer's norm is the global
norm of the gradients of its trainable weights (a weight the loss does not reach counts as 0). A layer
vanishes with norm < 1e-7 and explodes with norm > 1e3 or non-finite; component = 1 - fraction of layers
that do either (1 for a model without trainable layers).

dead_units: on a validation sample, every unit of a ReLU-family output (an ``Activation`` layer or a
non-recurrent layer with an inline activation that is ``relu`` or ``relu6``, or a ``ReLU`` layer without
negative slope; leaky ReLU, elu, selu, gelu, swish, tanh, sigmoid are skipped) is dead if never positive;
a unit is one channel of the last axis (conv feature maps are reduced over batch and spatial axes).
Component = 1 - dead units / ReLU units; a model without ReLU units scores 1 (``dead_units.relu_units
= 0``).

weight_health: 0 if any weight (trainable or not) is non-finite, else 1 - fraction of trainable weight
tensors whose largest ``|w|`` exceeds 1e3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from sklearn.isotonic import IsotonicRegression

from hpo.core.schema import HealthWeights

COMPONENTS = ("overfitting", "convergence", "gradients", "dead_units", "weight_health")
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")
WINDOW = 5
VANISHING, EXPLODING, LARGE_WEIGHT = 1e-7, 1e3, 1e3
_RELU = frozenset({"relu", "relu6"})


@dataclass
class HealthReport:
    """Per-component scores in [0, 1], the raw measurements behind them, and their weighted mean."""

    components: dict[str, float]
    measurements: dict[str, float]
    score: float


def ramp(x: float, lo: float, hi: float) -> float:
    """1 up to ``lo``, 0 from ``hi``, linear in between."""
    return float(np.clip((hi - x) / (hi - lo), 0.0, 1.0))


def _overfitting(history: Mapping[str, Sequence[float]], out: dict[str, float]) -> float:
    acc_gap = float(history["accuracy"][-1]) - float(history["val_accuracy"][-1])
    loss_gap = float(history["val_loss"][-1]) - float(history["loss"][-1])
    out.update({"overfitting.accuracy_gap": acc_gap, "overfitting.loss_gap": loss_gap})
    if not (np.isfinite(acc_gap) and np.isfinite(loss_gap)):
        return 0.0
    return min(ramp(acc_gap, 0.02, 0.25), ramp(loss_gap, 0.05, 0.5))


def _convergence(history: Mapping[str, Sequence[float]], out: dict[str, float]) -> float:
    val_loss = np.asarray(history["val_loss"], dtype=np.float64)
    window = val_loss[-WINDOW:]
    out["convergence.epochs"] = float(len(window))
    if not (np.isfinite(val_loss).all() and np.isfinite(np.asarray(history["loss"], dtype=np.float64)).all()):
        return 0.0
    if len(window) < 3:
        return 0.5
    epochs = np.arange(len(window), dtype=np.float64)
    never_rising = IsotonicRegression(increasing=False).fit_transform(epochs, window)
    mean = max(float(window.mean()), 1e-12)
    rel_slope = float(np.polyfit(epochs, window, 1)[0]) / mean
    rel_noise = float(np.sqrt(np.mean((window - never_rising) ** 2))) / mean
    out.update({"convergence.slope": rel_slope, "convergence.noise": rel_noise})
    return min(ramp(rel_slope, 0.0, 0.1), ramp(rel_noise, 0.02, 0.2))


def _gradients(model: keras.Model, x: np.ndarray, y: np.ndarray, out: dict[str, float]) -> float:
    layers = [layer for layer in model.layers if layer.trainable_weights]
    with tf.GradientTape() as tape:
        pred = tf.cast(model(x, training=False), tf.float32)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, pred))
    grads = tape.gradient(loss, [layer.trainable_weights for layer in layers])
    norms = {
        layer.name: float(tf.linalg.global_norm([g for g in layer_grads if g is not None]))
        for layer, layer_grads in zip(layers, grads, strict=True)
    }
    out.update({f"gradients.norm.{name}": norm for name, norm in norms.items()})
    values = np.array(list(norms.values()), dtype=np.float64)
    vanishing = float(np.sum(values < VANISHING))
    exploding = float(np.sum(~np.isfinite(values) | (values > EXPLODING)))
    out.update({"gradients.layers": float(len(values)), "gradients.vanishing_layers": vanishing})
    out["gradients.exploding_layers"] = exploding
    return 1.0 - (vanishing + exploding) / len(values) if len(values) else 1.0


def _is_relu(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return float(layer.negative_slope) == 0.0
    if isinstance(layer, keras.layers.RNN):  # its output is not its activation's output
        return False
    return getattr(getattr(layer, "activation", None), "__name__", None) in _RELU


def _dead_units(model: keras.Model, x_probe: np.ndarray, out: dict[str, float]) -> float:
    layers = [layer for layer in model.layers if _is_relu(layer)]
    total = dead = 0
    if layers:
        probe = keras.Model(model.inputs[0], [layer.output for layer in layers])
        outputs = probe(x_probe, training=False)
        for layer, act in zip(layers, outputs if isinstance(outputs, list) else [outputs], strict=True):
            peak = keras.ops.convert_to_numpy(act).reshape(-1, act.shape[-1]).max(axis=0)
            layer_dead = int(np.sum(~(peak > 0)))
            out[f"dead_units.fraction.{layer.name}"] = layer_dead / peak.size
            total, dead = total + peak.size, dead + layer_dead
    out.update({"dead_units.relu_units": float(total), "dead_units.dead": float(dead)})
    return 1.0 - dead / total if total else 1.0


def _weight_health(model: keras.Model, out: dict[str, float]) -> float:
    nonfinite = sum(not np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)
    peaks = [float(np.abs(keras.ops.convert_to_numpy(w)).max(initial=0.0)) for w in model.trainable_weights]
    large = sum(p > LARGE_WEIGHT for p in peaks)
    out.update(
        {"weight_health.nonfinite_tensors": float(nonfinite), "weight_health.large_tensors": float(large)}
    )
    out["weight_health.max_abs"] = max(peaks, default=0.0)
    if nonfinite:
        return 0.0
    return 1.0 - large / len(peaks) if peaks else 1.0


def assess(
    model: keras.Model,
    history: Mapping[str, Sequence[float]],
    x_batch: np.ndarray,
    y_batch: np.ndarray,
    x_probe: np.ndarray,
    weights: HealthWeights,
) -> HealthReport:
    """Measure the five health components of a trained model and their weighted score.

    ``x_batch``/``y_batch``: a fixed training batch (gradients); ``x_probe``: validation inputs (dead units).
    """
    missing = [key for key in CURVES if not history.get(key)]
    if missing:
        raise ValueError(f"health needs the per-epoch curves {CURVES}; history lacks {missing}")
    out: dict[str, float] = {}
    components = {
        "overfitting": _overfitting(history, out),
        "convergence": _convergence(history, out),
        "gradients": _gradients(model, x_batch, y_batch, out),
        "dead_units": _dead_units(model, x_probe, out),
        "weight_health": _weight_health(model, out),
    }
    relative = {name: float(getattr(weights, name)) for name in COMPONENTS}
    score = sum(relative[name] * components[name] for name in COMPONENTS) / sum(relative.values())
    return HealthReport(components=components, measurements=out, score=float(score))


def blend(val_accuracy: float, health: float, weights: HealthWeights) -> float:
    """The health-mode objective: ``accuracy * val_accuracy + (1 - accuracy) * health``."""
    return weights.accuracy * val_accuracy + (1.0 - weights.accuracy) * health
