"""Tests for the 3D view (``architecture.html``) and the glTF export (``architecture.glb``) of a trial's
architecture: self-contained, small, one block per layer; a well-formed GLB with a box per layer."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.worker.test_architecture import MODELS
from worker.architecture import glb, view
from worker.architecture.describe import describe
from worker.models import build_model


@pytest.fixture(scope="module", params=sorted(MODELS))
def spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(json.dumps(describe(build_model(*MODELS[request.param]), {})))


def scene_of(page: str) -> dict[str, Any]:
    match = re.search(r"window\.HPO_SCENE = (\{.*?\});</script>", page)
    assert match, "the scene is inlined"
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_view_is_one_small_self_contained_file_with_a_block_per_layer(
    spec: dict[str, Any], tmp_path: Path
) -> None:
    page = view.write(spec, tmp_path).read_text()
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|https?://|import\(|fetch\(", page), "loads nothing"
    assert page.count("<script>") == 2 and "window.hpoScene" in page
    assert len(page.encode()) < 40_000
    scene = scene_of(page)
    assert [b["name"] for b in scene["blocks"]] == [entry["name"] for entry in spec["layers"]]
    assert len(scene["edges"]) == len(spec["edges"])
    assert all(b["shape"] and len(b["size"]) == 3 and min(b["size"]) > 0 for b in scene["blocks"])


def test_blocks_grow_with_the_output_shape_and_run_along_the_flow() -> None:
    spec = describe(build_model(*MODELS["cnn"]), {})
    blocks = {b["name"]: b for b in scene_of(view.page(spec))["blocks"]}
    assert blocks["conv_1"]["size"][2] < blocks["conv_2"]["size"][2], "4 then 8 channels"
    assert blocks["pool_1"]["size"][0] < blocks["conv_1"]["size"][0], "8x8 pooled to 4x4"
    depth = [b["centre"][2] for b in blocks.values()]
    assert depth == sorted(depth) and len(set(depth)) == len(depth)


def test_a_name_with_a_closing_script_tag_cannot_break_out_of_the_page() -> None:
    spec = describe(build_model(*MODELS["cnn"]), {})
    spec["name"] = "</script><script>alert(1)</script>"
    page = view.page(spec)
    assert page.count("</script>") == 2 and scene_of(page)["name"] == spec["name"]


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON and binary chunks of a GLB, checking the header and the chunk lengths on the way."""
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    gltf = json.loads(data[20 : 20 + json_length])
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and bin_length % 4 == 0
    assert 28 + json_length + bin_length == total
    return gltf, data[28 + json_length :]


def test_glb_holds_a_box_per_layer_and_a_material_per_kind(spec: dict[str, Any], tmp_path: Path) -> None:
    gltf, binary = read_glb(glb.write(spec, tmp_path).read_bytes())
    assert gltf["asset"]["version"] == "2.0" and gltf["buffers"] == [{"byteLength": len(binary)}]
    assert [n["name"] for n in gltf["nodes"]] == [f"{e['index']}. {e['name']}" for e in spec["layers"]]
    assert gltf["scenes"][gltf["scene"]]["nodes"] == list(range(len(spec["layers"])))
    kinds = list(dict.fromkeys(entry["kind"] for entry in spec["layers"]))
    assert [m["name"] for m in gltf["materials"]] == kinds
    for buffer_view in gltf["bufferViews"]:
        assert buffer_view["byteOffset"] % 4 == 0 and buffer_view["byteOffset"] + buffer_view[
            "byteLength"
        ] <= len(binary)
    for mesh, entry in zip(gltf["meshes"], spec["layers"], strict=True):
        (primitive,) = mesh["primitives"]
        assert gltf["materials"][primitive["material"]]["name"] == entry["kind"]
        position = gltf["accessors"][primitive["attributes"]["POSITION"]]
        buffer_view = gltf["bufferViews"][position["bufferView"]]
        corners = np.frombuffer(binary, np.float32, position["count"] * 3, buffer_view["byteOffset"]).reshape(
            -1, 3
        )
        assert np.allclose(corners.min(0), position["min"]) and np.allclose(corners.max(0), position["max"])
        indices = gltf["accessors"][primitive["indices"]]
        assert indices["count"] == 36 and position["count"] == 24
