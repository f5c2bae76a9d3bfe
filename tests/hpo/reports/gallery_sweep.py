"""A fake sweep whose finished trials log an ``architecture.json`` shaped by their parameters."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from tests.hpo.reports.fake_sweep import FakeSweep, build_sweep

KINDS = {"input": "#d9d9d9", "conv": "#9ecae1", "pool": "#a1d99b", "dense": "#fdae6b", "other": "#ffffff"}


def architecture(params: dict[str, Any]) -> dict[str, Any]:
    """A CNN's ``architecture.json``: one conv block per 16 filters (at least one), then a dense head."""
    filters = int(params["model.filters"])
    rows: list[tuple[str, str, str, list[Any], int, str | None]] = [
        ("input", "InputLayer", "input", [None, 8, 8, 1], 0, None)
    ]
    side, channels = 8, 1
    for i in range(1, max(1, math.ceil(filters / 16)) + 1):
        rows.append(
            (f"conv_{i}", "Conv2D", "conv", [None, side, side, filters], (9 * channels + 1) * filters, "relu")
        )
        channels, side = filters, max(1, side // 2)
        rows.append((f"pool_{i}", "MaxPooling2D", "pool", [None, side, side, filters], 0, None))
    rows += [
        ("flatten", "Flatten", "other", [None, side * side * filters], 0, None),
        (
            "output",
            "Dense",
            "dense",
            [None, 10],
            (side * side * filters + 1) * 10,
            str(params["model.activation"]),
        ),
    ]
    layers = [
        {
            "index": i,
            "name": n,
            "type": t,
            "kind": k,
            "colour": KINDS[k],
            "output_shape": s,
            "params": p,
            "activation": a,
        }
        for i, (n, t, k, s, p, a) in enumerate(rows)
    ]
    edges = [
        {"from": a["name"], "to": b["name"], "direct": True} for a, b in zip(layers, layers[1:], strict=False)
    ]
    total = sum(layer["params"] for layer in layers)
    return {
        "name": "cnn",
        "layers": layers,
        "edges": edges,
        "totals": {"layers": len(layers), "params": total},
    }


def log_architectures(sweep: FakeSweep, numbers: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """Log ``architecture/architecture.json`` on the runs of finished trials (or of ``numbers``)."""
    client = MlflowClient(sweep.tracking_uri)
    logged = {}
    for trial in sweep.study.trials:
        if (numbers is None and trial.state.name != "COMPLETE") or (
            numbers is not None and trial.number not in numbers
        ):
            continue
        spec = architecture(trial.params)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "architecture.json")
            path.write_text(json.dumps(spec))
            client.log_artifact(sweep.run_ids[trial.number], str(path), "architecture")
        logged[trial.number] = spec
    return logged


def gallery_sweep(
    tracking_uri: str, name: str, n_trials: int, **kw: Any
) -> tuple[FakeSweep, dict[int, dict[str, Any]]]:
    """``build_sweep`` whose completed trials have logged their architecture."""
    sweep = build_sweep(tracking_uri, name, n_trials, **kw)
    return sweep, log_architectures(sweep)
