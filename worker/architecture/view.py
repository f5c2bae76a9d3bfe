"""``architecture.html``: the interactive 3D/2D view of one trial's network, one self-contained file.

MLflow's artifact viewer shows an HTML artifact in a sandboxed iframe that loads no sibling file, so the
scene data and the viewer script (``view.js``, a canvas renderer with no library) are
inlined; nothing is fetched from the network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from worker.architecture.scene import scene

HINT = "drag: orbit (pan in 2D) · wheel: zoom · hover or click a block: details"
STYLE = """
html, body { margin: 0; height: 100%; font: 13px Helvetica, Arial, sans-serif; color: #111; }
body { display: flex; flex-direction: column; }
#bar { padding: 6px 10px; border-bottom: 1px solid #ddd; display: flex; gap: 12px; align-items: center; }
#bar .hint { color: #777; }
#view { flex: 1; width: 100%; min-height: 300px; cursor: grab; background: #fafafa; }
#details { display: none; position: absolute; right: 10px; top: 44px; background: #fff; padding: 8px 10px;
  border: 1px solid #bbb; border-radius: 4px; box-shadow: 0 1px 4px #0002; }
#details span { color: #777; display: inline-block; min-width: 90px; }
"""


@cache
def viewer_script() -> str:
    """The viewer's JavaScript, shipped next to this module."""
    return files("worker.architecture").joinpath("view.js").read_text(encoding="utf-8")


def page(architecture: Mapping[str, Any]) -> str:
    """The view of ``architecture`` (an ``architecture.json``) as one HTML document."""
    data = scene(architecture)
    totals = data["totals"]
    title = html.escape(f"{data['name']}: {totals['layers']} layers, {totals['params']:,} params")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f'<div id="bar"><b>{title}</b><button id="mode" type="button">2D</button>'
        f'<span class="hint">{HINT}</span></div>'
        '<canvas id="view"></canvas><div id="details"></div>'
        f"<script>window.HPO_SCENE = {payload};</script>\n"
        f"<script>\n{viewer_script()}</script>\n</body></html>\n"
    )


def write(architecture: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``architecture.html`` in ``out_dir``; return it."""
    path = out_dir / "architecture.html"
    path.write_text(page(architecture), encoding="utf-8")
    return path
