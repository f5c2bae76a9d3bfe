"""Tests for worker.architecture: the JSON matches the Keras model layer for layer, the diagram draws
one coloured box per layer, and a missing Graphviz only skips the diagram."""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import keras
import pytest
from PIL import Image

from hpo.core.schema import CNNConf, DatasetConf, DataSource, LSTMConf, Modality
from worker import architecture
from worker.models import build_model

DIGITS = DatasetConf(
    name="digits", modality=Modality.image, source=DataSource.sklearn, input_shape=[8, 8, 1], num_classes=10
)
TEXT = DatasetConf(
    name="imdb",
    modality=Modality.text,
    source=DataSource.keras,
    input_shape=[20],
    num_classes=2,
    vocab_size=50,
)
MODELS = {
    "cnn": (CNNConf(conv_layers=2, filters=4, batch_norm=True, dense_units=8), DIGITS),
    "lstm": (LSTMConf(embedding_dim=8, units=4, layers=2, bidirectional=True), TEXT),
    "row-lstm": (LSTMConf(units=4), DIGITS),
}
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@pytest.fixture(params=sorted(MODELS))
def built(request: pytest.FixtureRequest) -> tuple[keras.Model, CNNConf | LSTMConf]:
    conf, dataset = MODELS[request.param]
    return build_model(conf, dataset), conf


def test_json_matches_the_keras_model_layer_for_layer(built: tuple[keras.Model, CNNConf | LSTMConf]) -> None:
    model, conf = built
    spec = json.loads(json.dumps(architecture.describe(model, asdict(conf))))  # JSON-serialisable
    assert spec["hyperparameters"] == asdict(conf)
    assert [entry["index"] for entry in spec["layers"]] == list(range(len(model.layers)))
    for layer, entry in zip(model.layers, spec["layers"], strict=True):
        assert entry["name"] == layer.name
        assert entry["type"] == type(layer).__name__
        assert entry["output_shape"] == list(layer.output.shape)
        assert entry["params"] == layer.count_params()
    totals = spec["totals"]
    assert totals["layers"] == len(model.layers)
    assert totals["params"] == model.count_params()
    assert totals["trainable_params"] + totals["non_trainable_params"] == model.count_params()


def test_cnn_layers_have_kinds_activations_and_a_chain_of_edges() -> None:
    model = build_model(*MODELS["cnn"])
    spec = architecture.describe(model, {})
    kinds = {entry["name"]: entry["kind"] for entry in spec["layers"]}
    assert kinds["input"] == "input" and kinds["conv_1"] == "conv" and kinds["pool_1"] == "pool"
    assert kinds["bn_1"] == "normalization" and kinds["dense"] == kinds["output"] == "dense"
    activations = {entry["name"]: entry["activation"] for entry in spec["layers"]}
    assert activations["act_1"] == "relu" and activations["output"] == "softmax"
    names = [layer.name for layer in model.layers]
    assert [(e["from"], e["to"]) for e in spec["edges"]] == list(zip(names, names[1:], strict=False))
    assert all(e["direct"] for e in spec["edges"])


def test_lstm_mask_flow_is_an_indirect_edge_and_lstms_are_recurrent() -> None:
    spec = architecture.describe(build_model(*MODELS["lstm"]), {})
    kinds = {entry["name"]: entry["kind"] for entry in spec["layers"]}
    assert kinds["embedding"] == "embedding" and kinds["bilstm_1"] == kinds["bilstm_2"] == "recurrent"
    assert next(e for e in spec["layers"] if e["name"] == "bilstm_1")["activation"] == "tanh"
    edges = {(e["from"], e["to"]): e["direct"] for e in spec["edges"]}
    assert edges[("embedding", "bilstm_1")] and edges[("bilstm_1", "bilstm_2")]
    assert edges[("input", "bilstm_1")] is False, "the padding mask reaches the LSTM through a non-layer op"


def test_summary_text_is_keras_summary() -> None:
    model = build_model(*MODELS["cnn"])
    text = architecture.summary_text(model)
    assert "Total params" in text and f"{model.count_params():,}" in text
    assert all(layer.name in text for layer in model.layers)


@needs_dot
def test_diagram_has_one_coloured_node_per_layer(
    built: tuple[keras.Model, CNNConf | LSTMConf], tmp_path: Path
) -> None:
    model, _ = built
    svg, png = architecture.draw(model, tmp_path)
    assert (svg.name, png.name) == ("architecture.svg", "architecture.png")
    root = ET.parse(svg).getroot()
    nodes = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
    assert len(nodes) == len(model.layers)
    text = svg.read_text()
    kinds = {architecture.layer_kind(layer) for layer in model.layers}
    assert all(architecture.COLOURS[kind] in text for kind in kinds - {"other"})
    assert all(f"{i}. {layer.name}" in text for i, layer in enumerate(model.layers))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 50 and image.height > 50


def test_missing_graphviz_skips_the_diagram_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="worker.architecture"):
        assert architecture.draw(build_model(*MODELS["cnn"]), tmp_path) == []
    assert "dot" in caplog.text and not list(tmp_path.iterdir())
