"""Where each layer of an ``architecture.json`` sits: a rank (its depth along the data flow) and a column.

A layer's rank is one more than the deepest layer feeding it, so layers run top to bottom in topological
order; layers of one rank (parallel branches) sit side by side. An edge that skips ranks is a skip
connection: drawings route it around the side. The 2D diagram, the 3D view and the glTF export share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Slot:
    """A layer's place: ``rank`` counts down the data flow from 0, ``column`` across from 0."""

    index: int
    rank: int
    column: int


@dataclass(frozen=True)
class Link:
    """An edge between two layers' indices; ``direct`` is false where it passes a non-layer operation."""

    source: int
    target: int
    direct: bool

    def skips(self, slots: list[Slot]) -> bool:
        """Whether the edge jumps over at least one rank (a skip connection) or runs back up."""
        return slots[self.target].rank - slots[self.source].rank != 1


def links(architecture: Mapping[str, Any]) -> list[Link]:
    """The edges of ``architecture`` by layer index (edges naming unknown layers are dropped)."""
    index = {entry["name"]: entry["index"] for entry in architecture["layers"]}
    return [
        Link(index[edge["from"]], index[edge["to"]], bool(edge["direct"]))
        for edge in architecture["edges"]
        if edge["from"] in index and edge["to"] in index
    ]


def place(architecture: Mapping[str, Any]) -> list[Slot]:
    """Each layer's slot, in layer order (Keras lists a functional model's layers topologically)."""
    count = len(architecture["layers"])
    feeds: dict[int, list[int]] = {}
    for link in links(architecture):
        if link.source < link.target:
            feeds.setdefault(link.target, []).append(link.source)
    ranks: list[int] = []
    for i in range(count):
        ranks.append(1 + max((ranks[j] for j in feeds.get(i, [])), default=-1))
    taken: dict[int, int] = {}
    slots = []
    for i, rank in enumerate(ranks):
        slots.append(Slot(i, rank, taken.get(rank, 0)))
        taken[rank] = taken.get(rank, 0) + 1
    return slots


def block_size(shape: Any) -> tuple[float, float, float]:
    """A 3D block's (width, height, depth) for a layer's output shape, each on a log scale.

    The batch axis is dropped; an image-like (height, width, channels) output is a slab as wide and tall
    as its feature map and as deep as its channels, a sequence (steps, features) a sheet, a vector a bar.
    """
    while isinstance(shape, list) and shape and isinstance(shape[0], list):
        shape = shape[0]
    dims = [d for d in (shape or [])[1:] if isinstance(d, int)]

    def scale(n: int) -> float:
        return round(0.3 + 0.5 * math.log2(n + 1), 3)

    if len(dims) >= 3:
        return scale(dims[1]), scale(dims[0]), scale(dims[2])
    if len(dims) == 2:
        return scale(dims[1]), scale(dims[0]), 0.3
    if len(dims) == 1:
        return 0.5, scale(dims[0]), 0.5
    return 0.8, 0.8, 0.8
