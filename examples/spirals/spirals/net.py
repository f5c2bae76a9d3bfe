"""A small residual MLP: a dense stem, then blocks that add a two-layer transform back onto their input."""

from __future__ import annotations

import keras


def residual_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 32,
    blocks: int = 2,
    activation: str = "relu",
    dropout: float = 0.0,
) -> keras.Model:
    """hpo's builder contract: the data's shape and classes, this config's keys; an uncompiled model."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    x = keras.layers.Dense(width, activation=activation)(x)
    for _ in range(blocks):
        h = keras.layers.Dense(width, activation=activation)(x)
        h = keras.layers.Dropout(dropout)(h)
        h = keras.layers.Dense(width)(h)
        x = keras.layers.Activation(activation)(keras.layers.Add()([x, h]))
    # float32 keeps the softmax stable under a mixed-precision policy
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="residual_mlp")
