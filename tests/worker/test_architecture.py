"""Tests for worker.architecture and its diagram: the JSON matches the Keras model layer for layer, and the
diagram draws one numbered, coloured box per layer and an arrow per edge, with no system binary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import keras
import pytest
from PIL import Image

from hpo.core.schema import CNNConf, LSTMConf
from worker.architecture import diagram, layout
from worker.architecture.describe import describe, layer_kind, summary_text
from worker.models import build_model

# each model's config, then the input shape and classes of the data it is built for (digits, imdb)
MODELS = {
    "cnn": (CNNConf(conv_layers=2, filters=4, batch_norm=True, dense_units=8), (8, 8, 1), 10),
    "lstm": (LSTMConf(embedding_dim=8, units=4, layers=2, bidirectional=True, vocab_size=50), (20,), 2),
    "row-lstm": (LSTMConf(units=4), (8, 8, 1), 10),
}


@pytest.fixture(params=sorted(MODELS))
def built(request: pytest.FixtureRequest) -> tuple[keras.Model, CNNConf | LSTMConf]:
    conf, input_shape, num_classes = MODELS[request.param]
    return build_model(conf, input_shape, num_classes), conf


def test_json_matches_the_keras_model_layer_for_layer(built: tuple[keras.Model, CNNConf | LSTMConf]) -> None:
    model, conf = built
    spec = json.loads(json.dumps(describe(model, asdict(conf))))  # JSON-serialisable
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
    spec = describe(model, {})
    kinds = {entry["name"]: entry["kind"] for entry in spec["layers"]}
    assert kinds["input"] == "input" and kinds["conv_1"] == "conv" and kinds["pool_1"] == "pool"
    assert kinds["bn_1"] == "normalization" and kinds["dense"] == kinds["output"] == "dense"
    activations = {entry["name"]: entry["activation"] for entry in spec["layers"]}
    assert activations["act_1"] == "relu" and activations["output"] == "softmax"
    names = [layer.name for layer in model.layers]
    assert [(e["from"], e["to"]) for e in spec["edges"]] == list(zip(names, names[1:], strict=False))
    assert all(e["direct"] for e in spec["edges"])


def test_lstm_mask_flow_is_an_indirect_edge_and_lstms_are_recurrent() -> None:
    spec = describe(build_model(*MODELS["lstm"]), {})
    kinds = {entry["name"]: entry["kind"] for entry in spec["layers"]}
    assert kinds["embedding"] == "embedding" and kinds["bilstm_1"] == kinds["bilstm_2"] == "recurrent"
    assert next(e for e in spec["layers"] if e["name"] == "bilstm_1")["activation"] == "tanh"
    edges = {(e["from"], e["to"]): e["direct"] for e in spec["edges"]}
    assert edges[("embedding", "bilstm_1")] and edges[("bilstm_1", "bilstm_2")]
    assert edges[("input", "bilstm_1")] is False, "the padding mask reaches the LSTM through a non-layer op"


def test_summary_text_is_keras_summary() -> None:
    model = build_model(*MODELS["cnn"])
    text = summary_text(model)
    assert "Total params" in text and f"{model.count_params():,}" in text
    assert all(layer.name in text for layer in model.layers)


def test_diagram_has_one_coloured_box_per_layer_and_an_arrow_per_edge(
    built: tuple[keras.Model, CNNConf | LSTMConf], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz, no system binary
    model, _ = built
    spec = describe(model, {})
    svg, png = diagram.draw(spec, tmp_path)
    assert (svg.name, png.name) == ("architecture.svg", "architecture.png")
    root = ET.parse(svg).getroot()
    groups = list(root.iter("{http://www.w3.org/2000/svg}g"))
    boxes = [g for g in groups if g.get("class") == "layer"]
    assert [g.get("id") for g in boxes] == [f"layer{i}" for i in range(len(model.layers))]
    assert sum(g.get("class") == "edge" for g in groups) == len(spec["edges"])
    for box, layer in zip(boxes, model.layers, strict=True):
        fill = box.find("{http://www.w3.org/2000/svg}rect").get("fill")  # type: ignore[union-attr]
        assert fill == diagram.COLOURS[layer_kind(layer)]
    text = svg.read_text()
    assert all(f"{i}. {layer.name}" in text for i, layer in enumerate(model.layers))
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 200 and image.height > 60 * len(model.layers)


def test_indirect_edges_are_dashed_and_skip_connections_curve_round_the_side(tmp_path: Path) -> None:
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(4, name="a")(inputs)
    side = keras.layers.Dense(4, name="b")(inputs)
    joined = keras.layers.Add(name="sum")([keras.layers.Dense(4, name="c")(hidden), side])
    model = keras.Model(inputs, keras.layers.Concatenate(name="cat")([joined, inputs]), name="skip")
    spec = describe(model, {})
    slots = {spec["layers"][s.index]["name"]: (s.rank, s.column) for s in layout.place(spec)}
    assert slots["a"][0] == slots["b"][0] == 1 and slots["a"][1] != slots["b"][1], "branches side by side"
    drawn = diagram.lay_out(spec)
    curved = [points for points, _ in drawn.edges if len(points) > 2]
    assert len(curved) == 2, "b -> sum and x -> cat jump ranks"
    assert all(max(x for x, _ in points) > max(x for (x, _), _, _ in drawn.boxes) for points in curved)
    lstm = describe(build_model(*MODELS["lstm"]), {})
    svg = diagram.to_svg(diagram.lay_out(lstm))
    assert svg.count("stroke-dasharray") == sum(not e["direct"] for e in lstm["edges"]) == 2
