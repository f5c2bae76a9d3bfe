"""A trained model's architecture as data (``architecture.json``) and as Keras' summary.

Each layer has a kind (conv, pool, dense, recurrent, ...) the drawings colour it by, and the edges follow
the data flow Keras records (``keras.utils.model_to_dot``, which builds a pydot graph and never runs
Graphviz): an edge is indirect where it passes through an operation that is not a layer, such as an
embedding's padding mask. The drawings and exports are made from this data (``worker.architecture_*``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from worker.architecture.diagram import COLOURS


def layer_kind(layer: keras.layers.Layer) -> str:
    """The kind of a layer, one of ``COLOURS``: what the drawings colour it by."""
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
                "colour": COLOURS[layer_kind(layer)],
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
