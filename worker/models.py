"""Model builders: a model config names a builder with ``_target_``, which turns the data's input shape and
number of classes into an uncompiled Keras model.

:func:`build_model` calls any builder the Hydra way, the model config's other keys as keyword arguments,
and checks what comes back. The built-in families are builders like a user's: :func:`cnn`, :func:`lstm`
and :func:`mlp` check that their settings fit the data and raise
:class:`~hpo.core.errors.ModelConfigError` before they create any layer.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import keras

from hpo.core.errors import ModelConfigError
from hpo.core.schema import CNNConf, LSTMConf, MLPConf
from worker.loader_contract import describe

log = logging.getLogger(__name__)

ModelSection = CNNConf | LSTMConf | MLPConf | Mapping[str, Any]

_EXAMPLE_ACTIVATIONS = "relu, gelu, elu, selu, tanh, sigmoid, swish"


def build_model(model_cfg: ModelSection, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The uncompiled Keras model that ``model_cfg``'s builder makes for data of ``input_shape`` (one
    example's) and ``num_classes``, its output cast to float32 where a mixed-precision policy left it
    float16 (the loss and the softmax stay stable).

    Raises:
        ModelConfigError: the builder cannot be imported or take these keywords, it returned something
            other than a ``keras.Model``, or a model whose output does not fit ``num_classes``.
    """
    settings = model_settings(model_cfg)
    target = str(settings.get("_target_"))
    builder = _builder(target, settings)
    kwargs = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    try:
        inspect.signature(builder.func).bind(*builder.args, **builder.keywords, **kwargs)
    except TypeError as exc:
        raise ModelConfigError(
            f"model._target_={target} cannot be called as hpo calls a builder ({exc}): it takes input_shape, "
            "num_classes and the model config's other keys as keyword arguments"
        ) from None
    except ValueError:  # no signature to read (a builtin or C callable): the call itself tells
        pass
    model = builder(**kwargs)
    _check_output(target, model, num_classes)
    return _float32_output(model)


def model_settings(model_cfg: ModelSection) -> dict[str, Any]:
    """The model config as plain keys: a built-in family's fields, or a user builder's own keys."""
    return asdict(model_cfg) if is_dataclass(model_cfg) else dict(model_cfg)


def _builder(target: str, settings: dict[str, Any]) -> functools.partial[Any]:
    """The builder with the config's keys bound, located first for a one-line error of our own."""
    import hydra.utils
    from hydra.errors import InstantiationException

    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelConfigError(
            f"model._target_={target}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(getattr(module, name, None)):
        found = "no attribute" if not hasattr(module, name) else "an attribute that is not callable"
        raise ModelConfigError(f"model._target_={target}: module {module_name} has {found} {name!r}")
    try:
        builder = hydra.utils.instantiate(settings, _partial_=True, _convert_="all")
    except InstantiationException as exc:  # a nested _target_ in the model config
        first = str(exc).strip().splitlines()[0]
        raise ModelConfigError(f"model._target_={target}: {first}") from exc
    assert isinstance(builder, functools.partial)
    return builder


def _check_output(target: str, model: Any, num_classes: int) -> None:
    """A builder's result is a Keras model with one output of ``num_classes`` (a subclassed model has no
    output before it is called: its shape is left to training)."""
    if not isinstance(model, keras.Model):
        raise ModelConfigError(
            f"model._target_={target} returned {describe(model)}: return a keras.Model (uncompiled: hpo "
            "compiles it)"
        )
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return
    shapes = [tuple(output.shape) for output in outputs]
    if shapes != [(None, num_classes)]:
        raise ModelConfigError(
            f"model._target_={target} built a model with output shape {', '.join(map(str, shapes))}; the "
            f"data has {num_classes} classes: end it in one Dense(num_classes, activation='softmax')"
        )


def _float32_output(model: keras.Model) -> keras.Model:
    """``model``, with a float32 cast appended where its output is float16 (a mixed-precision policy)."""
    outputs = getattr(model, "outputs", None)
    if not outputs or outputs[0].dtype == "float32":
        return model
    log.info(f"model {model.name}: its {outputs[0].dtype} output is cast to float32 (mixed precision)")
    cast = keras.layers.Activation("linear", dtype="float32", name="output_float32")(outputs[0])
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # one input is called with one array
    return keras.Model(inputs, cast, name=model.name)


def _check_activation(name: str) -> None:
    try:
        keras.activations.get(name)
    except (ValueError, TypeError) as exc:
        raise ModelConfigError(
            f"model.activation={name!r} is not a Keras activation: use one of {_EXAMPLE_ACTIVATIONS}, ..."
        ) from exc


def _output(x: Any, num_classes: int) -> Any:
    # float32 keeps the softmax numerically stable under a mixed-precision policy
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)


def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    conv_layers: int,
    filters: int,
    kernel_size: int,
    activation: str,
    batch_norm: bool,
    dropout: float,
    dense_units: int,
) -> keras.Model:
    """Convolutional classifier of images (``input_shape`` height, width, channels); the settings are
    :class:`~hpo.core.schema.CNNConf`'s."""
    if len(input_shape) != 3:
        raise ModelConfigError(
            f"model=cnn needs images (height, width, channels); the data's examples have shape "
            f"{input_shape}: use model=lstm for text or model=mlp for tables"
        )
    _check_activation(activation)
    height, width = input_shape[0], input_shape[1]
    limit = min(height, width).bit_length() - 1  # halvings before a side drops below 2
    if conv_layers > limit:
        side = 2**conv_layers
        advice = f"use model.conv_layers<={limit}" if limit else "use model=lstm"
        raise ModelConfigError(
            f"model.conv_layers={conv_layers} needs an input of at least {side}x{side}; the data's images "
            f"are {height}x{width}: {advice}"
        )

    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for i in range(1, conv_layers + 1):
        x = keras.layers.Conv2D(
            filters * 2 ** (i - 1), kernel_size, padding="same", use_bias=not batch_norm, name=f"conv_{i}"
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    if dense_units > 0:
        x = keras.layers.Dense(dense_units, activation=activation, name="dense")(x)
    return keras.Model(inputs, _output(x, num_classes), name="cnn")


def lstm(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    embedding_dim: int,
    units: int,
    layers: int,
    bidirectional: bool,
    dropout: float,
    vocab_size: int | None,
) -> keras.Model:
    """Recurrent classifier; the settings are :class:`~hpo.core.schema.LSTMConf`'s. The input's rank says
    what a time step is: a token id (text, embedded: needs ``vocab_size``), a feature vector (sequences),
    or an image row (its pixels and channels)."""
    inputs: Any
    if len(input_shape) == 1:
        if vocab_size is None:
            raise ModelConfigError(
                f"model=lstm on examples of shape {input_shape} needs token ids and dataset.vocab_size: "
                "use model=mlp for tables"
            )
        inputs = keras.Input(shape=input_shape, dtype="int32", name="input")
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")(inputs)
    elif len(input_shape) == 2:
        inputs = x = keras.Input(shape=input_shape, name="input")
    elif len(input_shape) == 3:  # row-LSTM: image rows are the time steps
        height, width, channels = input_shape
        inputs = keras.Input(shape=input_shape, name="input")
        x = keras.layers.Reshape((height, width * channels), name="rows")(inputs)
    else:
        raise ModelConfigError(
            f"model=lstm reads token ids, sequences or images; the data's examples have shape {input_shape}"
        )
    for i in range(1, layers + 1):
        layer: keras.layers.Layer = keras.layers.LSTM(
            units, return_sequences=i < layers, dropout=dropout, name=f"lstm_{i}"
        )
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bilstm_{i}")
        x = layer(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _output(x, num_classes), name="lstm")


def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    layers: int,
    units: int,
    activation: str,
    batch_norm: bool,
    dropout: float,
) -> keras.Model:
    """Dense classifier of feature vectors (a table's rows; other shapes are flattened); the settings are
    :class:`~hpo.core.schema.MLPConf`'s. Each hidden layer is dense, optional batch norm, activation and
    dropout; ``layers=0`` leaves a linear softmax classifier."""
    _check_activation(activation)
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for i in range(1, layers + 1):
        x = keras.layers.Dense(units, use_bias=not batch_norm, name=f"dense_{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _output(x, num_classes), name="mlp")
