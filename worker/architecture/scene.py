"""The 3D scene of an ``architecture.json``: a block per layer, sized by its output shape, and the edges.

Blocks run along the z axis in rank order (``worker.architecture.layout``), parallel branches side by
side along x; the 3D view (``architecture.html``) and the glTF export (``architecture.glb``) draw it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.architecture.diagram import COLOURS, rows, shape_text
from worker.architecture.layout import block_size, links, place

RANK_GAP, COLUMN_GAP = 1.2, 1.5


def scene(architecture: Mapping[str, Any]) -> dict[str, Any]:
    """Blocks (centre, size, colour and the layer's details) and edges (by block index, direct or not)."""
    slots = place(architecture)
    sizes = [block_size(entry["output_shape"]) for entry in architecture["layers"]]
    ranks = max((s.rank for s in slots), default=-1) + 1
    depth = [max((sizes[s.index][2] for s in slots if s.rank == r), default=0.0) for r in range(ranks)]
    width = max((sizes[s.index][0] for s in slots), default=0.0) + COLUMN_GAP
    starts = [sum(depth[:r]) + r * RANK_GAP for r in range(ranks)]
    blocks = []
    for slot, entry, size in zip(slots, architecture["layers"], sizes, strict=True):
        blocks.append(
            {
                "index": entry["index"],
                "name": entry["name"],
                "type": entry["type"],
                "kind": entry["kind"],
                "colour": COLOURS.get(entry["kind"], COLOURS["other"]),
                "shape": shape_text(entry["output_shape"]),
                "params": entry["params"],
                "activation": entry.get("activation"),
                "rank": slot.rank,
                "column": slot.column,
                "label": rows(entry),
                "centre": [
                    round(slot.column * width, 3),
                    0.0,
                    round(starts[slot.rank] + depth[slot.rank] / 2, 3),
                ],
                "size": list(size),
            }
        )
    return {
        "name": architecture["name"],
        "totals": dict(architecture["totals"]),
        "blocks": blocks,
        "edges": [
            {"from": link.source, "to": link.target, "direct": link.direct, "skip": link.skips(slots)}
            for link in links(architecture)
        ],
    }
