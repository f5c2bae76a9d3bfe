"""The 2D architecture diagram, drawn without any system binary: SVG written directly, PNG with Pillow.

One numbered box per layer (name, type and activation, output shape, parameters), filled by kind, in the
slots of ``worker.architecture.layout``; arrows for the data flow, dashed and grey where it passes an
operation that is not a layer, skip connections curving round the right-hand side; a title and a legend.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from worker.architecture.layout import links, place

# fill colour of each kind of layer
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
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, LANE = 210, 64, 30, 30, 16, 14
FONT_PX, LINE_PX = 11, 14
INDIRECT = "#7f7f7f"
Point = tuple[float, float]


@dataclass
class Diagram:
    """A laid-out diagram: boxes (top-left corners) with their text rows, edge polylines, the canvas size."""

    boxes: list[tuple[Point, str, list[str]]]
    edges: list[tuple[list[Point], bool]]
    title: str
    legend: list[str]
    width: int
    height: int


def shape_text(shape: Any) -> str:
    """An output shape as Keras prints it, ``None`` as ``?``: ``(?, 8, 8, 4)``."""
    return "?" if shape is None else str(shape).replace("None", "?").replace("[", "(").replace("]", ")")


def rows(entry: Mapping[str, Any]) -> list[str]:
    """A layer box's text rows: number and name, type and activation, output shape, parameters."""
    activation = entry.get("activation")
    kind = entry["type"] + (f" · {activation}" if activation not in (None, "linear") else "")
    return [
        f"{entry['index']}. {entry['name']}",
        kind,
        shape_text(entry["output_shape"]),
        f"{entry['params']:,} params",
    ]


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, steps: int = 16) -> list[Point]:
    out = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t**3
        out.append(
            (a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1])
        )
    return out


def lay_out(architecture: Mapping[str, Any]) -> Diagram:
    """Place every box and route every edge of ``architecture`` (an ``architecture.json``)."""
    slots = place(architecture)
    columns = max((s.column for s in slots), default=0) + 1
    corners = [(MARGIN + s.column * (BOX_W + GAP_X), MARGIN + s.rank * (BOX_H + GAP_Y)) for s in slots]
    right = MARGIN + columns * BOX_W + (columns - 1) * GAP_X
    edges: list[tuple[list[Point], bool]] = []
    skips = 0
    for link in links(architecture):
        (sx, sy), (tx, ty) = corners[link.source], corners[link.target]
        if link.skips(slots):
            skips += 1
            bulge = right + skips * LANE
            start, end = (sx + BOX_W, sy + BOX_H / 2), (tx + BOX_W, ty + BOX_H / 2)
            edges.append((_bezier(start, (bulge, start[1]), (bulge, end[1]), end), link.direct))
        else:
            edges.append(([(sx + BOX_W / 2, sy + BOX_H), (tx + BOX_W / 2, ty)], link.direct))
    ranks = max((s.rank for s in slots), default=0) + 1
    totals = architecture["totals"]
    legend = list(dict.fromkeys(entry["kind"] for entry in architecture["layers"]))
    return Diagram(
        boxes=[
            (corner, entry["kind"], rows(entry))
            for corner, entry in zip(corners, architecture["layers"], strict=True)
        ],
        edges=edges,
        title=f"{architecture['name']}: {totals['layers']} layers, {totals['params']:,} params",
        legend=legend,
        width=max(right + (skips + 1) * LANE + MARGIN, 2 * MARGIN + 90 * len(legend)),
        height=MARGIN + ranks * (BOX_H + GAP_Y) + 2 * LINE_PX + MARGIN,
    )


def _arrow(points: list[Point]) -> list[Point]:
    (x0, y0), (x1, y1) = points[-2], points[-1]
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-6)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    return [
        (x1, y1),
        (x1 - 8 * ux - 4 * uy, y1 - 8 * uy + 4 * ux),
        (x1 - 8 * ux + 4 * uy, y1 - 8 * uy - 4 * ux),
    ]


def _legend_y(diagram: Diagram) -> float:
    return diagram.height - MARGIN - LINE_PX


def to_svg(diagram: Diagram) -> str:
    """The diagram as an SVG document: a ``<g class="layer">`` per box, a ``<g class="edge">`` per edge."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{diagram.width}" height="{diagram.height}" '
        f'viewBox="0 0 {diagram.width} {diagram.height}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="{FONT_PX}">',
        f'<rect width="{diagram.width}" height="{diagram.height}" fill="#ffffff"/>',
    ]
    for points, direct in diagram.edges:
        colour = "#000000" if direct else INDIRECT
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        head = " ".join(f"{x:.1f},{y:.1f}" for x, y in _arrow(points))
        dash = "" if direct else ' stroke-dasharray="5,4"'
        out.append(
            f'<g class="edge"><path d="{path}" fill="none" stroke="{colour}"{dash}/>'
            f'<polygon points="{head}" fill="{colour}"/></g>'
        )
    for i, ((x, y), kind, text) in enumerate(diagram.boxes):
        out.append(
            f'<g class="layer" id="layer{i}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{COLOURS[kind]}" stroke="#000000"/>'
        )
        for row, line in enumerate(text):
            weight = ' font-weight="bold"' if row == 0 else ""
            out.append(
                f'<text x="{x + BOX_W / 2}" y="{y + 14 + row * LINE_PX}" text-anchor="middle"{weight}>'
                f"{html.escape(line)}</text>"
            )
        out.append("</g>")
    ty = _legend_y(diagram)
    out.append(
        f'<text x="{MARGIN}" y="{ty - LINE_PX + 10}" font-weight="bold">{html.escape(diagram.title)}</text>'
    )
    for i, kind in enumerate(diagram.legend):
        x = MARGIN + i * 90
        out.append(
            f'<rect x="{x}" y="{ty}" width="86" height="{LINE_PX}" fill="{COLOURS[kind]}" stroke="#000000"/>'
        )
        out.append(f'<text x="{x + 43}" y="{ty + 11}" text-anchor="middle">{kind}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _polyline(draw: ImageDraw.ImageDraw, points: list[Point], colour: str, dashed: bool) -> None:
    if not dashed:
        draw.line(points, fill=colour, width=1)
        return
    pen, on = 0.0, True
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-6)
        at = 0.0
        while at < length:
            step = min(length - at, (5.0 if on else 4.0) - pen)
            if on:
                a, b = at / length, (at + step) / length
                draw.line(
                    [(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                    fill=colour,
                )
            at, pen = at + step, pen + step
            if pen >= (5.0 if on else 4.0):
                pen, on = 0.0, not on


def to_png(diagram: Diagram, path: Path) -> None:
    """Draw the diagram with Pillow into the PNG file ``path``."""
    image = Image.new("RGB", (int(diagram.width), int(diagram.height)), "#ffffff")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_PX)
    for points, direct in diagram.edges:
        colour = "#000000" if direct else INDIRECT
        _polyline(draw, points, colour, not direct)
        draw.polygon(_arrow(points), fill=colour)
    for (x, y), kind, text in diagram.boxes:
        draw.rounded_rectangle((x, y, x + BOX_W, y + BOX_H), radius=6, fill=COLOURS[kind], outline="#000000")
        for row, line in enumerate(text):
            centre = (x + BOX_W / 2, y + 10 + row * LINE_PX)
            draw.text(centre, line, fill="#000000", font=font, anchor="mm")
    ty = _legend_y(diagram)
    draw.text((MARGIN, ty - LINE_PX + 5), diagram.title, fill="#000000", font=font, anchor="lm")
    for i, kind in enumerate(diagram.legend):
        x = MARGIN + i * 90
        draw.rectangle((x, ty, x + 86, ty + LINE_PX), fill=COLOURS[kind], outline="#000000")
        draw.text((x + 43, ty + LINE_PX / 2), kind, fill="#000000", font=font, anchor="mm")
    image.save(path, "PNG", optimize=True)


def draw(architecture: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``architecture.svg`` and ``architecture.png`` of ``architecture`` in ``out_dir``; return them."""
    diagram = lay_out(architecture)
    svg, png = out_dir / "architecture.svg", out_dir / "architecture.png"
    svg.write_text(to_svg(diagram), encoding="utf-8")
    to_png(diagram, png)
    return [svg, png]
