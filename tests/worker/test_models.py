"""Tests of worker.models: shapes, layer structure and the errors of impossible configs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hpo.core.errors import ModelConfigError
from hpo.core.schema import CNNConf, DatasetConf, DataSource, LSTMConf, Modality
from worker.models import build_model

BATCH = 4


@pytest.fixture
def digits() -> DatasetConf:
    return DatasetConf(
        name="digits",
        modality=Modality.image,
        source=DataSource.sklearn,
        input_shape=[8, 8, 1],
        num_classes=10,
    )


@pytest.fixture
def imdb() -> DatasetConf:
    return DatasetConf(
        name="imdb",
        modality=Modality.text,
        source=DataSource.keras,
        input_shape=[20],
        num_classes=2,
        vocab_size=100,
    )


def _images(dataset: DatasetConf) -> np.ndarray:
    return np.random.default_rng(0).random((BATCH, *dataset.input_shape), dtype=np.float32)


def _tokens(dataset: DatasetConf) -> np.ndarray:
    assert dataset.vocab_size is not None
    return np.random.default_rng(0).integers(0, dataset.vocab_size, (BATCH, *dataset.input_shape))


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


def test_cnn_outputs_probabilities_with_named_layers(digits: DatasetConf) -> None:
    model = build_model(CNNConf(conv_layers=2, filters=4, dense_units=8), digits)
    _assert_probabilities(model, _images(digits), 10)
    names = [layer.name for layer in model.layers]
    for expected in ("conv_1", "act_1", "pool_1", "conv_2", "act_2", "pool_2", "dense", "output"):
        assert expected in names
    assert model.get_layer("conv_2").filters == 8
    assert not model.compiled


@pytest.mark.parametrize("conv_layers", [1, 3])
def test_cnn_block_count_follows_config(digits: DatasetConf, conv_layers: int) -> None:
    model = build_model(CNNConf(conv_layers=conv_layers, filters=2), digits)
    assert _count(model, keras.layers.Conv2D) == conv_layers
    assert _count(model, keras.layers.MaxPooling2D) == conv_layers
    assert _count(model, keras.layers.Activation) == conv_layers
    assert _count(model, keras.layers.BatchNormalization) == 0


def test_batch_norm_adds_one_layer_per_block(digits: DatasetConf) -> None:
    model = build_model(CNNConf(conv_layers=2, filters=2, batch_norm=True), digits)
    assert _count(model, keras.layers.BatchNormalization) == 2
    assert {"bn_1", "bn_2"} <= {layer.name for layer in model.layers}


def test_dense_units_zero_removes_hidden_dense(digits: DatasetConf) -> None:
    model = build_model(CNNConf(conv_layers=1, filters=2, dense_units=0, dropout=0.0), digits)
    assert _count(model, keras.layers.Dense) == 1
    assert _count(model, keras.layers.Dropout) == 0
    _assert_probabilities(model, _images(digits), 10)


def test_output_layer_is_float32(digits: DatasetConf, imdb: DatasetConf) -> None:
    for model in (build_model(CNNConf(filters=2), digits), build_model(LSTMConf(units=4), imdb)):
        output = model.get_layer("output")
        assert output.dtype == "float32"
        assert output.output.dtype == "float32"


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_lstm_on_text(imdb: DatasetConf, layers: int, bidirectional: bool) -> None:
    cfg = LSTMConf(embedding_dim=8, units=4, layers=layers, bidirectional=bidirectional)
    model = build_model(cfg, imdb)
    _assert_probabilities(model, _tokens(imdb), 2)
    assert _lstm_count(model) == layers
    assert _count(model, keras.layers.Bidirectional) == (layers if bidirectional else 0)
    embedding = model.get_layer("embedding")
    assert embedding.input_dim == 100
    assert embedding.mask_zero


def test_row_lstm_on_images(digits: DatasetConf) -> None:
    model = build_model(LSTMConf(units=4, layers=2), digits)
    _assert_probabilities(model, _images(digits), 10)
    assert model.get_layer("rows").output.shape == (None, 8, 8)
    assert _count(model, keras.layers.Embedding) == 0
    assert _lstm_count(model) == 2


def test_too_many_pools_names_the_limit(digits: DatasetConf) -> None:
    with pytest.raises(ModelConfigError) as info:
        build_model(CNNConf(conv_layers=5), digits)
    message = str(info.value)
    assert "model.conv_layers=5" in message
    assert "32x32" in message
    assert "8x8" in message
    assert "model.conv_layers<=3" in message


def test_pooling_limit_uses_the_smaller_side() -> None:
    wide = DatasetConf(
        name="wide", modality=Modality.image, source=DataSource.keras, input_shape=[7, 40, 3], num_classes=2
    )
    build_model(CNNConf(conv_layers=2, filters=2), wide)
    with pytest.raises(ModelConfigError, match=r"model\.conv_layers<=2"):
        build_model(CNNConf(conv_layers=3, filters=2), wide)


def test_cnn_on_text_points_to_lstm(imdb: DatasetConf) -> None:
    with pytest.raises(ModelConfigError, match="model=lstm"):
        build_model(CNNConf(), imdb)


def test_unknown_activation_lists_valid_ones(digits: DatasetConf) -> None:
    with pytest.raises(ModelConfigError, match="model.activation='relux'") as info:
        build_model(CNNConf(activation="relux"), digits)
    assert "relu" in str(info.value).split(":", 1)[1]


def test_unknown_family(digits: DatasetConf) -> None:
    with pytest.raises(ModelConfigError, match="model.family"):
        build_model(CNNConf(family="transformer"), digits)


@pytest.mark.parametrize("family", ["cnn", "lstm"])
def test_tiny_model_trains_one_step(digits: DatasetConf, imdb: DatasetConf, family: str) -> None:
    if family == "cnn":
        model, x = build_model(CNNConf(conv_layers=1, filters=2, dense_units=4), digits), _images(digits)
        y = np.arange(BATCH) % digits.num_classes
    else:
        model, x = build_model(LSTMConf(embedding_dim=4, units=4), imdb), _tokens(imdb)
        y = np.arange(BATCH) % imdb.num_classes
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, _ = model.train_on_batch(x, y)
    assert np.isfinite(loss)
