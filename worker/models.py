"""Model builders: turn a model config and a dataset config into an uncompiled Keras functional model.

Each family is one entry of ``_BUILDERS``; a builder checks that its config fits the dataset and raises
:class:`~hpo.core.errors.ModelConfigError` before it creates any layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from hpo.core.errors import ModelConfigError
from hpo.core.schema import CNNConf, DatasetConf, LSTMConf, Modality

_EXAMPLE_ACTIVATIONS = "relu, gelu, elu, selu, tanh, sigmoid, swish"


def build_model(model_cfg: CNNConf | LSTMConf, dataset_cfg: DatasetConf) -> keras.Model:
    """Build the uncompiled Keras model that ``model_cfg.family`` describes for ``dataset_cfg``."""
    builder = _BUILDERS.get(model_cfg.family)
    if builder is None:
        raise ModelConfigError(f"model.family must be one of {sorted(_BUILDERS)}, got {model_cfg.family!r}")
    return builder(model_cfg, dataset_cfg)


def _check_activation(name: str) -> None:
    try:
        keras.activations.get(name)
    except (ValueError, TypeError) as exc:
        raise ModelConfigError(
            f"model.activation={name!r} is not a Keras activation: use one of {_EXAMPLE_ACTIVATIONS}, ..."
        ) from exc


def _check_pooling(cfg: CNNConf, dataset: DatasetConf) -> None:
    height, width = dataset.input_shape[0], dataset.input_shape[1]
    limit = min(height, width).bit_length() - 1  # halvings before a side drops below 2
    if cfg.conv_layers > limit:
        side = 2**cfg.conv_layers
        advice = f"use model.conv_layers<={limit}" if limit else "use model=lstm"
        raise ModelConfigError(
            f"model.conv_layers={cfg.conv_layers} needs an input of at least {side}x{side}; "
            f"dataset {dataset.name} is {height}x{width}: {advice}"
        )


def _output(x: Any, num_classes: int) -> Any:
    # float32 keeps the softmax numerically stable under a mixed-precision policy
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)


def _build_cnn(cfg: CNNConf, dataset: DatasetConf) -> keras.Model:
    if dataset.modality != Modality.image:
        raise ModelConfigError(
            f"model=cnn needs image data; dataset {dataset.name} is {dataset.modality.value}: use model=lstm"
        )
    _check_activation(cfg.activation)
    _check_pooling(cfg, dataset)

    inputs = keras.Input(shape=tuple(dataset.input_shape), name="input")
    x = inputs
    for i in range(1, cfg.conv_layers + 1):
        x = keras.layers.Conv2D(
            cfg.filters * 2 ** (i - 1),
            cfg.kernel_size,
            padding="same",
            use_bias=not cfg.batch_norm,
            name=f"conv_{i}",
        )(x)
        if cfg.batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(cfg.activation, name=f"act_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    if cfg.dense_units > 0:
        x = keras.layers.Dense(cfg.dense_units, activation=cfg.activation, name="dense")(x)
    return keras.Model(inputs, _output(x, dataset.num_classes), name="cnn")


def _build_lstm(cfg: LSTMConf, dataset: DatasetConf) -> keras.Model:
    if dataset.modality == Modality.text:
        inputs = keras.Input(shape=tuple(dataset.input_shape), dtype="int32", name="input")
        x = keras.layers.Embedding(dataset.vocab_size, cfg.embedding_dim, mask_zero=True, name="embedding")(
            inputs
        )
    else:  # row-LSTM: image rows are the time steps, each row's pixels and channels the features
        height, width, channels = dataset.input_shape
        inputs = keras.Input(shape=(height, width, channels), name="input")
        x = keras.layers.Reshape((height, width * channels), name="rows")(inputs)
    for i in range(1, cfg.layers + 1):
        layer: keras.layers.Layer = keras.layers.LSTM(
            cfg.units, return_sequences=i < cfg.layers, dropout=cfg.dropout, name=f"lstm_{i}"
        )
        if cfg.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bilstm_{i}")
        x = layer(x)
    if cfg.dropout > 0:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    return keras.Model(inputs, _output(x, dataset.num_classes), name="lstm")


_BUILDERS: dict[str, Callable[[Any, DatasetConf], keras.Model]] = {"cnn": _build_cnn, "lstm": _build_lstm}
