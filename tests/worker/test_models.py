"""Tests of worker.models: shapes, layer structure and the errors of impossible configs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hpo.core.errors import ModelConfigError
from hpo.core.schema import CNNConf, LSTMConf, MLPConf
from worker.models import build_model

BATCH = 4
# one example's shape and the classes of digits (images) and of a small imdb (token ids)
DIGITS = ((8, 8, 1), 10)
IMDB = ((20,), 2)
VOCAB = 100


def _images() -> np.ndarray:
    return np.random.default_rng(0).random((BATCH, *DIGITS[0]), dtype=np.float32)


def _tokens() -> np.ndarray:
    return np.random.default_rng(0).integers(0, VOCAB, (BATCH, *IMDB[0]))


def _assert_probabilities(model: keras.Model, x: np.ndarray, num_classes: int) -> None:
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (BATCH, num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _count(model: keras.Model, layer_type: type) -> int:
    return sum(isinstance(layer, layer_type) for layer in model.layers)


def _lstm_count(model: keras.Model) -> int:
    return sum(
        isinstance(layer, keras.layers.LSTM)
        or (
            isinstance(layer, keras.layers.Bidirectional)
            and isinstance(layer.forward_layer, keras.layers.LSTM)
        )
        for layer in model.layers
    )


def test_cnn_outputs_probabilities_with_named_layers() -> None:
    model = build_model(CNNConf(conv_layers=2, filters=4, dense_units=8), *DIGITS)
    _assert_probabilities(model, _images(), 10)
    names = [layer.name for layer in model.layers]
    for expected in ("conv_1", "act_1", "pool_1", "conv_2", "act_2", "pool_2", "dense", "output"):
        assert expected in names
    assert model.get_layer("conv_2").filters == 8
    assert not model.compiled


@pytest.mark.parametrize("conv_layers", [1, 3])
def test_cnn_block_count_follows_config(conv_layers: int) -> None:
    model = build_model(CNNConf(conv_layers=conv_layers, filters=2), *DIGITS)
    assert _count(model, keras.layers.Conv2D) == conv_layers
    assert _count(model, keras.layers.MaxPooling2D) == conv_layers
    assert _count(model, keras.layers.Activation) == conv_layers
    assert _count(model, keras.layers.BatchNormalization) == 0


def test_batch_norm_adds_one_layer_per_block() -> None:
    model = build_model(CNNConf(conv_layers=2, filters=2, batch_norm=True), *DIGITS)
    assert _count(model, keras.layers.BatchNormalization) == 2
    assert {"bn_1", "bn_2"} <= {layer.name for layer in model.layers}


def test_dense_units_zero_removes_hidden_dense() -> None:
    model = build_model(CNNConf(conv_layers=1, filters=2, dense_units=0, dropout=0.0), *DIGITS)
    assert _count(model, keras.layers.Dense) == 1
    assert _count(model, keras.layers.Dropout) == 0
    _assert_probabilities(model, _images(), 10)


def test_output_layer_is_float32() -> None:
    for model in (
        build_model(CNNConf(filters=2), *DIGITS),
        build_model(LSTMConf(units=4, vocab_size=VOCAB), *IMDB),
    ):
        output = model.get_layer("output")
        assert output.dtype == "float32"
        assert output.output.dtype == "float32"


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_lstm_on_text(layers: int, bidirectional: bool) -> None:
    cfg = LSTMConf(embedding_dim=8, units=4, layers=layers, bidirectional=bidirectional, vocab_size=VOCAB)
    model = build_model(cfg, *IMDB)
    _assert_probabilities(model, _tokens(), 2)
    assert _lstm_count(model) == layers
    assert _count(model, keras.layers.Bidirectional) == (layers if bidirectional else 0)
    embedding = model.get_layer("embedding")
    assert embedding.input_dim == 100
    assert embedding.mask_zero


def test_row_lstm_on_images() -> None:
    model = build_model(LSTMConf(units=4, layers=2), *DIGITS)
    _assert_probabilities(model, _images(), 10)
    assert model.get_layer("rows").output.shape == (None, 8, 8)
    assert _count(model, keras.layers.Embedding) == 0
    assert _lstm_count(model) == 2


def test_too_many_pools_names_the_limit() -> None:
    with pytest.raises(ModelConfigError) as info:
        build_model(CNNConf(conv_layers=5), *DIGITS)
    message = str(info.value)
    assert "model.conv_layers=5" in message
    assert "32x32" in message
    assert "8x8" in message
    assert "model.conv_layers<=3" in message


def test_pooling_limit_uses_the_smaller_side() -> None:
    build_model(CNNConf(conv_layers=2, filters=2), (7, 40, 3), 2)
    with pytest.raises(ModelConfigError, match=r"model\.conv_layers<=2"):
        build_model(CNNConf(conv_layers=3, filters=2), (7, 40, 3), 2)


def test_cnn_on_text_points_to_lstm() -> None:
    with pytest.raises(ModelConfigError, match="model=lstm"):
        build_model(CNNConf(), *IMDB)


def test_unknown_activation_lists_valid_ones() -> None:
    with pytest.raises(ModelConfigError, match="model.activation='relux'") as info:
        build_model(CNNConf(activation="relux"), *DIGITS)
    assert "relu" in str(info.value).split(":", 1)[1]


def test_unknown_builder() -> None:
    with pytest.raises(ModelConfigError, match="model._target_=worker.models.transformer"):
        build_model({"_target_": "worker.models.transformer"}, *DIGITS)


def test_lstm_reads_feature_sequences() -> None:
    model = build_model(LSTMConf(units=4), (6, 3), 2)
    _assert_probabilities(model, np.random.default_rng(0).random((BATCH, 6, 3), dtype=np.float32), 2)
    assert _count(model, keras.layers.Embedding) == 0


def test_lstm_on_table_rows_points_to_mlp() -> None:
    with pytest.raises(ModelConfigError, match="model=mlp"):
        build_model(LSTMConf(units=4), (5,), 2)


@pytest.mark.parametrize(("layers", "batch_norm"), [(0, False), (2, True)])
def test_mlp_layers_follow_config(layers: int, batch_norm: bool) -> None:
    model = build_model(MLPConf(layers=layers, units=8, batch_norm=batch_norm, dropout=0.1), (5,), 3)
    _assert_probabilities(model, np.random.default_rng(0).random((BATCH, 5), dtype=np.float32), 3)
    assert _count(model, keras.layers.Dense) == layers + 1
    assert _count(model, keras.layers.BatchNormalization) == (layers if batch_norm else 0)
    assert _count(model, keras.layers.Dropout) == layers
    assert _count(model, keras.layers.Flatten) == 0, "table rows are already flat"


def test_mlp_flattens_images() -> None:
    model = build_model(MLPConf(layers=1, units=8), *DIGITS)
    _assert_probabilities(model, _images(), 10)
    assert model.get_layer("flatten").output.shape == (None, 64)


@pytest.mark.parametrize("family", ["cnn", "lstm", "mlp"])
def test_tiny_model_trains_one_step(family: str) -> None:
    if family == "cnn":
        model, x = build_model(CNNConf(conv_layers=1, filters=2, dense_units=4), *DIGITS), _images()
        y = np.arange(BATCH) % DIGITS[1]
    elif family == "lstm":
        model, x = build_model(LSTMConf(embedding_dim=4, units=4, vocab_size=VOCAB), *IMDB), _tokens()
        y = np.arange(BATCH) % IMDB[1]
    else:
        model, x = build_model(MLPConf(layers=1, units=4), *DIGITS), _images()
        y = np.arange(BATCH) % DIGITS[1]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, _ = model.train_on_batch(x, y)
    assert np.isfinite(loss)
