"""``architecture.glb``: the 3D scene as a glTF 2.0 binary, for Blender, three.js editors and viewers.

One node and box mesh per layer, named after it, placed and sized as in the 3D view; one material per
kind of layer, in the diagram's colours. Written with ``struct`` and numpy: a 12-byte header, a JSON chunk
and a binary chunk (positions, normals and indices of every box), each padded to 4 bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from worker.architecture.scene import scene

MAGIC, VERSION, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 2, 0x4E4F534A, 0x004E4942
FLOAT, USHORT, ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 5126, 5123, 34962, 34963
# a unit cube's six faces: (normal axis, sign); four corners each, two triangles each
_FACES = [(axis, sign) for axis in range(3) for sign in (1.0, -1.0)]


def _unit_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions and normals (24 x 3, float32) and indices (36, uint16) of a cube of side 1 at the origin."""
    positions: list[list[float]] = []
    normals: list[list[float]] = []
    indices: list[int] = []
    for axis, sign in _FACES:
        u, v = [a for a in range(3) if a != axis]
        base = len(positions)
        for du, dv in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            corner = [0.0, 0.0, 0.0]
            corner[axis], corner[u], corner[v] = 0.5 * sign, du, dv
            positions.append(corner)
            normals.append([sign if a == axis else 0.0 for a in range(3)])
        quad = [0, 1, 2, 0, 2, 3]
        # counter-clockwise seen from outside: flip the winding where u x v points inwards
        if np.cross(np.eye(3)[u], np.eye(3)[v])[axis] * sign < 0:
            quad = [0, 2, 1, 0, 3, 2]
        indices += [base + i for i in quad]
    return np.array(positions, np.float32), np.array(normals, np.float32), np.array(indices, np.uint16)


def _rgba(hex_colour: str) -> list[float]:
    return [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)] + [1.0]


def to_glb(architecture: Mapping[str, Any]) -> bytes:
    """The glTF binary of ``architecture``'s 3D scene."""
    data = scene(architecture)
    positions, normals, indices = _unit_box()
    colours = {block["kind"]: block["colour"] for block in data["blocks"]}
    kinds = list(colours)
    chunks: list[bytes] = []
    views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []
    meshes: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    offset = 0
    for block in data["blocks"]:
        scaled = positions * np.array(block["size"], np.float32)
        first = len(accessors)
        for array, target in (
            (scaled, ARRAY_BUFFER),
            (normals, ARRAY_BUFFER),
            (indices, ELEMENT_ARRAY_BUFFER),
        ):
            raw = array.tobytes()
            views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": target})
            accessor: dict[str, Any] = {
                "bufferView": len(views) - 1,
                "componentType": USHORT if array.dtype == np.uint16 else FLOAT,
                "count": len(array),
                "type": "SCALAR" if array.ndim == 1 else "VEC3",
            }
            if array is scaled:
                accessor["min"], accessor["max"] = scaled.min(0).tolist(), scaled.max(0).tolist()
            accessors.append(accessor)
            padded = raw + b"\0" * (-len(raw) % 4)
            chunks.append(padded)
            offset += len(padded)
        primitive = {
            "attributes": {"POSITION": first, "NORMAL": first + 1},
            "indices": first + 2,
            "material": kinds.index(block["kind"]),
        }
        meshes.append({"name": block["name"], "primitives": [primitive]})
        nodes.append(
            {
                "name": f"{block['index']}. {block['name']}",
                "mesh": len(meshes) - 1,
                "translation": block["centre"],
            }
        )
    gltf = {
        "asset": {"version": "2.0", "generator": "hpo worker.architecture.glb"},
        "scene": 0,
        "scenes": [{"name": data["name"], "nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": [
            {"name": kind, "pbrMetallicRoughness": {"baseColorFactor": _rgba(colour), "metallicFactor": 0.0}}
            for kind, colour in colours.items()
        ],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = b"".join(chunks)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return (
        struct.pack("<III", MAGIC, VERSION, total)
        + struct.pack("<II", len(text), JSON_CHUNK)
        + text
        + struct.pack("<II", len(binary), BIN_CHUNK)
        + binary
    )


def write(architecture: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``architecture.glb`` in ``out_dir``; return it."""
    path = out_dir / "architecture.glb"
    path.write_bytes(to_glb(architecture))
    return path
