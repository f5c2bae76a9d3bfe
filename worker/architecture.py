"""A trained model's architecture as data (``architecture.json``), as Keras' summary, and as a diagram.

The diagram has one numbered box per layer, filled by kind (conv, pool, dense, recurrent, ...), with
arrows for the data flow Keras records (``keras.utils.model_to_dot``): dashed where it passes through an
operation that is not a layer, such as an embedding's padding mask. Graphviz's ``dot`` renders it.
"""

from __future__ import annotations

import html
import logging
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pydot

log = logging.getLogger(__name__)

# fill colour of each kind of layer in the diagram
COLOURS = {
    "input": "#d9d9d9",
    "conv": "#9ecae1",
    "pool": "#a1d99b",
    "dense": "#fdae6b",
    "recurrent": "#bcbddc",
    "embedding": "#fee391",
    "normalization": "#fcbba1",
    "other": "#ffffff",
}
DPI = 110


def layer_kind(layer: keras.layers.Layer) -> str:
    """The kind of a layer, one of ``COLOURS``: what the diagram colours it by."""
    name = type(layer).__name__
    if isinstance(layer, keras.layers.InputLayer):
        return "input"
    if isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional):
        return "recurrent"
    if "Conv" in name:
        return "conv"
    if "Pooling" in name:
        return "pool"
    if isinstance(layer, keras.layers.Dense | keras.layers.EinsumDense):
        return "dense"
    if isinstance(layer, keras.layers.Embedding):
        return "embedding"
    return "normalization" if "Normalization" in name else "other"


def _activation(layer: keras.layers.Layer) -> str | None:
    inner = getattr(layer, "forward_layer", None) or getattr(layer, "layer", None)
    activation = getattr(layer, "activation", None) or getattr(inner, "activation", None)
    if activation is None:
        return None
    return str(getattr(activation, "__name__", None) or getattr(activation, "name", activation))


def _output_shape(layer: keras.layers.Layer) -> Any:
    try:
        output = layer.output
    except (AttributeError, ValueError):  # a shared layer has no single output
        return None
    return keras.tree.map_structure(lambda t: list(t.shape), output)


def _size(weights: list[Any]) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _edges(model: keras.Model) -> list[tuple[str, str, bool]]:
    """(source, destination, direct) layer names along the data flow Keras records.

    An operation that is not a layer (an embedding's mask, a ``keras.ops`` call) is bridged by indirect
    edges from the layer before it to each layer after it.
    """
    names = {str(id(layer)): layer.name for layer in model.layers}
    after: dict[str, list[str]] = {}
    for edge in keras.utils.model_to_dot(model).get_edges():
        after.setdefault(str(edge.get_source()), []).append(str(edge.get_destination()))

    def layers_after(node: str) -> list[str]:
        return [n for nxt in after.get(node, []) for n in ([nxt] if nxt in names else layers_after(nxt))]

    edges: dict[tuple[str, str], bool] = {}
    for src in names:
        for nxt in after.get(src, []):
            for dst in [nxt] if nxt in names else layers_after(nxt):
                edges[(names[src], names[dst])] = edges.get((names[src], names[dst]), False) or nxt == dst
    if not edges:  # a subclassed model: Keras records no flow, so the layers are taken to run in order
        order = [layer.name for layer in model.layers]
        edges = {(a, b): True for a, b in zip(order, order[1:], strict=False)}
    return [(src, dst, direct) for (src, dst), direct in edges.items()]


def describe(model: keras.Model, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``architecture.json``: every layer in order, the flow between them, and totals."""
    edges = _edges(model)
    layers = []
    for index, layer in enumerate(model.layers):
        layers.append(
            {
                "index": index,
                "name": layer.name,
                "type": type(layer).__name__,
                "kind": layer_kind(layer),
                "output_shape": _output_shape(layer),
                "params": int(layer.count_params()) if layer.built else 0,
                "trainable_params": _size(layer.trainable_weights),
                "activation": _activation(layer),
                "inbound": [src for src, dst, _ in edges if dst == layer.name],
            }
        )
    return {
        "name": model.name,
        "hyperparameters": dict(hyperparameters),
        "layers": layers,
        "edges": [{"from": src, "to": dst, "direct": direct} for src, dst, direct in edges],
        "totals": {
            "layers": len(layers),
            "params": sum(entry["params"] for entry in layers),
            "trainable_params": _size(model.trainable_weights),
            "non_trainable_params": _size(model.non_trainable_weights),
        },
    }


def summary_text(model: keras.Model) -> str:
    """Keras' ``model.summary()`` as plain text."""
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    return "\n".join(lines)


def _label(entry: Mapping[str, Any]) -> str:
    shape = entry["output_shape"]
    shape_text = "?" if shape is None else str(shape).replace("None", "?").replace("[", "(").replace("]", ")")
    kind = entry["type"] + (
        f" · {entry['activation']}" if entry["activation"] not in (None, "linear") else ""
    )
    rows = [
        f"<b>{entry['index']}. {html.escape(entry['name'])}</b>",
        html.escape(kind),
        html.escape(shape_text),
        f"{entry['params']:,} params",
    ]
    return "<" + "<br/>".join(rows) + ">"


def to_dot(architecture: Mapping[str, Any]) -> pydot.Dot:
    """The diagram of an ``architecture.json`` as a pydot graph: a numbered, coloured box per layer."""
    graph = pydot.Dot(graph_type="digraph", rankdir="TB", dpi=str(DPI), nodesep="0.3", ranksep="0.3")
    graph.set_node_defaults(shape="box", style="filled,rounded", fontname="Helvetica", fontsize="11")
    kinds = list(dict.fromkeys(entry["kind"] for entry in architecture["layers"]))
    legend = "".join(f'<td bgcolor="{COLOURS[kind]}">{kind}</td>' for kind in kinds)
    totals = architecture["totals"]
    graph.set(
        "label",
        f'<<table border="0" cellspacing="2"><tr><td colspan="{len(kinds)}">'
        f"<b>{html.escape(architecture['name'])}</b>: {totals['layers']} layers, "
        f"{totals['params']:,} params</td></tr><tr>{legend}</tr></table>>",
    )
    graph.set("fontname", "Helvetica")
    ids = {entry["name"]: f"layer{entry['index']}" for entry in architecture["layers"]}
    for entry in architecture["layers"]:
        graph.add_node(pydot.Node(ids[entry["name"]], label=_label(entry), fillcolor=COLOURS[entry["kind"]]))
    for edge in architecture["edges"]:
        line = pydot.Edge(ids[edge["from"]], ids[edge["to"]])
        if not edge["direct"]:
            line.set("style", "dashed")
            line.set("color", "gray50")
        graph.add_edge(line)
    return graph


def draw(model: keras.Model, out_dir: Path, architecture: Mapping[str, Any] | None = None) -> list[Path]:
    """Render the diagram to ``architecture.svg`` and ``architecture.png`` in ``out_dir``; return them.

    Returns no files (with a warning) when Graphviz's ``dot`` is not on PATH.

    Raises:
        subprocess.CalledProcessError: ``dot`` failed on the graph.
    """
    dot = shutil.which("dot")
    if dot is None:
        log.warning("architecture diagram skipped: Graphviz's `dot` is not on PATH (apt install graphviz)")
        return []
    source = to_dot(architecture or describe(model, {})).to_string()
    svg, png = out_dir / "architecture.svg", out_dir / "architecture.png"
    subprocess.run(
        [dot, "-Tsvg", "-o", str(svg), "-Tpng", "-o", str(png)],
        input=source.encode(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return [svg, png]
