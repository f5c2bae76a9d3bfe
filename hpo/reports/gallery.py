"""The sweep's architecture gallery, ``reports/gallery.html`` on the parent run: every trial's network side
by side, coloured by objective, filterable, the best marked, two picked trials compared.

One self-contained page (MLflow's artifact viewer loads no sibling file): compact per-trial layer rows
taken from each trial's ``architecture/architecture.json`` and drawn by the page's script
(``gallery.js``), so a trial adds a few hundred bytes, not a drawing.
"""

from __future__ import annotations

import html
import json
import math
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from hpo.reports.sweep_report import SweepReport, TrialRow

GALLERY_FILE = "gallery.html"
ARCHITECTURE_ARTIFACT = "architecture/architecture.json"
NO_COLOUR = "#ffffff"

STYLE = """
body { margin: 0; font: 13px Helvetica, Arial, sans-serif; color: #111; }
header { padding: 8px 12px; border-bottom: 1px solid #ddd; }
#filters { padding: 6px 12px; border-bottom: 1px solid #eee; line-height: 2; }
#filters .group { margin-left: 14px; }
#filters input[type=number] { width: 70px; }
#grid { display: flex; flex-wrap: wrap; gap: 10px; padding: 10px 12px; }
.card { width: 236px; border: 3px solid #bbb; border-radius: 5px; background: #fff; }
.card.best { box-shadow: 0 0 0 3px #111; }
.card .head { padding: 3px 6px; display: flex; gap: 6px; align-items: center; }
.card .head label { margin-left: auto; font-size: 11px; }
.card .params, .card .none { padding: 3px 6px; font-size: 11px; color: #444; word-break: break-word; }
#compare { padding: 4px 12px; border-bottom: 1px solid #ddd; }
#compare .pair { display: flex; gap: 10px; }
#compare table { border-collapse: collapse; margin-top: 8px; }
#compare td, #compare th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
tr.added { background: #d9f0d3; } tr.removed { background: #fddbc7; } tr.changed { background: #fee391; }
.hint { color: #777; }
"""


def compact(architecture: Mapping[str, Any]) -> dict[str, Any]:
    """An ``architecture.json`` as the gallery draws it: a row per layer (name, kind, output shape,
    parameters, type and activation, colour) and the edges as (source, target, direct) layer indices."""
    index = {entry["name"]: i for i, entry in enumerate(architecture["layers"])}
    layers = []
    for entry in architecture["layers"]:
        shape = entry.get("output_shape")
        shape_text = (
            "?" if shape is None else str(shape).replace("None", "?").replace("[", "(").replace("]", ")")
        )
        activation = entry.get("activation")
        label = entry["type"] + (f" {activation}" if activation not in (None, "linear") else "")
        layers.append(
            [entry["name"], entry["kind"], shape_text, entry["params"], label, entry.get("colour", NO_COLOUR)]
        )
    edges = [
        [index[e["from"]], index[e["to"]], bool(e["direct"])]
        for e in architecture["edges"]
        if e["from"] in index and e["to"] in index
    ]
    return {"layers": layers, "edges": edges}


class ArchitectureReader:
    """Reads each trial run's ``architecture.json`` once: a run's architecture never changes after it is
    logged, so a live gallery downloads only those of trials new since the last refresh."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self._found: dict[str, dict[str, Any] | None] = {}

    def read(self, trials: Iterable[TrialRow]) -> dict[int, dict[str, Any]]:
        """The compact architecture of every trial that has logged one, by trial number."""
        from mlflow.exceptions import MlflowException

        out: dict[int, dict[str, Any]] = {}
        for trial in trials:
            if trial.run_id is None:
                continue
            if trial.run_id not in self._found:
                try:
                    with tempfile.TemporaryDirectory(prefix="hpo-gallery-") as tmp:
                        path = self.client.download_artifacts(trial.run_id, ARCHITECTURE_ARTIFACT, tmp)
                        found: dict[str, Any] | None = compact(json.loads(Path(path).read_text()))
                except (MlflowException, OSError, ValueError, KeyError):
                    found = None
                if found is not None or trial.state in ("COMPLETE", "FAIL", "PRUNED"):
                    self._found[trial.run_id] = found
            architecture = self._found.get(trial.run_id)
            if architecture is not None:
                out[trial.number] = architecture
        return out


@cache
def gallery_script() -> str:
    """The gallery's JavaScript, shipped next to this module."""
    return files("hpo.reports").joinpath("gallery.js").read_text(encoding="utf-8")


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def page(report: SweepReport, architectures: Mapping[int, dict[str, Any]]) -> str:
    """The gallery of ``report``'s trials as one HTML document."""
    data = {
        "objective": report.objective,
        "direction": report.direction,
        "params": report.varying_params() or sorted({k for t in report.trials for k in t.params}),
        "trials": [
            {
                "number": t.number,
                "state": t.state,
                "objective": t.objective if t.objective is not None and math.isfinite(t.objective) else None,
                "params": {k: _plain(v) for k, v in t.params.items()},
                "architecture": architectures.get(t.number),
            }
            for t in report.trials
        ],
    }
    best = report.best()
    summary = f"{len(report.trials)} trials, {len(report.completed)} completed" + (
        f"; best #{best[0].number}: {report.objective} {best[0].objective:.6g}" if best else ""
    )
    title = html.escape(f"Architectures: {report.objective} ({report.direction})")
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body><header><b>{title}</b> · {html.escape(summary)} · "
        '<span id="count"></span> <span class="hint">border and header: objective, red (worst) to green '
        "(best)</span></header>"
        '<div id="filters"></div><div id="compare"></div><div id="grid"></div>'
        f"<script>window.HPO_GALLERY = {payload};</script>\n"
        f"<script>\n{gallery_script()}</script>\n</body></html>\n"
    )


def write(report: SweepReport, architectures: Mapping[int, dict[str, Any]], out_dir: Path) -> Path:
    """Write ``gallery.html`` in ``out_dir``; return it."""
    path = out_dir / GALLERY_FILE
    path.write_text(page(report, architectures), encoding="utf-8")
    return path
