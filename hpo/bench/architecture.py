"""``python -m hpo.bench architecture``: sizes and drawing times of the architecture artifacts.

Per trial: ``architecture.json``, the SVG and PNG diagram, the 3D view (``architecture.html``) and the
glTF export, for real Keras CNNs drawn from a small search space on digits. Per sweep: the gallery of
``trials`` trials built from them. With Debian's Chromium, also the browser's time to draw each page.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpo.bench import chromium
from hpo.core.schema import CNNConf
from hpo.reports import gallery
from hpo.reports.sweep_report import SweepReport, TrialRow

# one example of digits, and its classes
DIGITS_SHAPE, DIGITS_CLASSES = (8, 8, 1), 10
ARTIFACTS = ("json", "svg", "png", "html", "glb")


def _models(count: int, seed: int) -> list[tuple[CNNConf, dict[str, Any]]]:
    """``count`` CNN configs drawn from a small space, each with its ``architecture.json``."""
    from worker.architecture.describe import describe
    from worker.models import build_model

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        conf = CNNConf(
            conv_layers=rng.randint(1, 3),
            filters=rng.choice([8, 16, 32, 64]),
            batch_norm=rng.random() < 0.5,
            dense_units=rng.choice([0, 32, 64]),
        )
        model = build_model(conf, DIGITS_SHAPE, DIGITS_CLASSES)
        out.append((conf, json.loads(json.dumps(describe(model, asdict(conf))))))
    return out


def _per_trial(spec: dict[str, Any], out: Path) -> dict[str, float]:
    """Seconds to write each artifact of ``spec`` in ``out``, and their bytes."""
    from worker.architecture import diagram, glb, view

    figures: dict[str, float] = {}
    for name, make in (
        ("json", lambda: (out / "architecture.json").write_text(json.dumps(spec, indent=2))),
        ("svg+png", lambda: diagram.draw(spec, out)),
        ("html", lambda: view.write(spec, out)),
        ("glb", lambda: glb.write(spec, out)),
    ):
        started = time.perf_counter()
        make()
        figures[f"{name}_s"] = time.perf_counter() - started
    for ext in ARTIFACTS:
        figures[f"{ext}_bytes"] = (out / f"architecture.{ext}").stat().st_size
    return figures


def _browser_ms(pages: list[Path]) -> list[float] | None:
    """Milliseconds from navigation to the end of the load event for each page in headless Chromium, or
    None where no headless Chromium can start (``hpo.bench.chromium.missing``)."""
    if chromium.missing():
        return None
    with chromium.headless_chromium() as driver:
        timings = []
        for page in pages:
            driver.get(page.as_uri())
            entry = "performance.getEntriesByType('navigation')[0]"
            timings.append(float(driver.execute_script(f"return {entry}.loadEventEnd - {entry}.startTime")))
        return timings


def measure(trials: int, models: int, seed: int) -> dict[str, Any]:
    """Median per-trial figures over ``models`` real models, and the ``trials``-trial gallery's."""
    pool = _models(models, seed)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="hpo-bench-architecture-") as tmp:
        per_model = []
        for i, (_, spec) in enumerate(pool):
            out = Path(tmp, f"model{i}")
            out.mkdir()
            per_model.append(_per_trial(spec, out))
        rows, architectures = [], {}
        for number in range(trials):
            conf, spec = pool[number % len(pool)]
            params = {f"model.{k}": v for k, v in asdict(conf).items() if k != "_target_"}
            state = "FAIL" if rng.random() < 0.05 else "COMPLETE"
            objective = None if state == "FAIL" else rng.uniform(0.6, 0.98)
            rows.append(TrialRow(number, state, objective, params))
            architectures[number] = gallery.compact(spec)
        report = SweepReport("val_accuracy", "maximize", rows, architectures=architectures)
        started = time.perf_counter()
        page = gallery.write(report, architectures, Path(tmp))
        gallery_s = time.perf_counter() - started
        from worker.architecture.view import viewer_script

        browser = _browser_ms([Path(tmp, "model0", "architecture.html"), page])
        return {
            "models": models,
            "layers_median": statistics.median(len(spec["layers"]) for _, spec in pool),
            "per_trial": {key: statistics.median(f[key] for f in per_model) for key in per_model[0]},
            "gallery_trials": trials,
            "gallery_s": gallery_s,
            "gallery_bytes": page.stat().st_size,
            "gallery_script_bytes": len(gallery.gallery_script().encode()),
            "view_script_bytes": len(viewer_script().encode()),
            "view_browser_ms": browser[0] if browser else None,
            "gallery_browser_ms": browser[1] if browser else None,
        }


def describe(figures: dict[str, Any]) -> list[str]:
    """The figures as lines of text."""
    per = figures["per_trial"]
    lines = [
        f"per trial (median of {figures['models']} real CNNs, {figures['layers_median']:g} layers): "
        + ", ".join(f"{ext} {per[f'{ext}_bytes'] / 1024:.1f} KiB" for ext in ARTIFACTS)
        + f" (html: script {figures['view_script_bytes'] / 1024:.1f} KiB)",
        "  written in: "
        + ", ".join(
            f"{name} {per[f'{name}_s'] * 1000:.1f} ms" for name in ("json", "svg+png", "html", "glb")
        ),
        f"gallery of {figures['gallery_trials']} trials: {figures['gallery_bytes'] / 1024:.1f} KiB "
        f"(script {figures['gallery_script_bytes'] / 1024:.1f} KiB), "
        f"written in {figures['gallery_s'] * 1000:.1f} ms",
    ]
    if figures["view_browser_ms"] is not None:
        lines.append(
            f"headless Chromium, navigation to load end: 3D view {figures['view_browser_ms']:.0f} ms, "
            f"gallery {figures['gallery_browser_ms']:.0f} ms"
        )
    return lines
