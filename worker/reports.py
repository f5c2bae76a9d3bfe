"""Per-trial reports in the trial's MLflow run: architecture, diagnostic plots and the datasets used.

Artifacts: ``architecture/`` (``architecture.json``, ``architecture.txt``, the diagram
``architecture.svg`` and ``architecture.png``, the interactive view ``architecture.html`` and the 3D
scene ``architecture.glb``) always; ``plots/`` (``training_curves.png``, ``confusion_matrix.png``,
``gradient_norms.png``, ``weight_distributions.png``, and ``health_components.png`` in health mode) as
``reports.plots`` says. A report that cannot be made is skipped with a warning: it never fails the trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from hpo.core.schema import HPOConfig
from worker import plots
from worker.architecture import diagram, glb, view
from worker.architecture.describe import describe, summary_text
from worker.models import model_settings
from worker.trainer import FitResult

log = logging.getLogger(__name__)

_SKLEARN_DIGITS = "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html"


def should_plot(policy: str, objective: float, best_so_far: float | None, direction: str) -> bool:
    """Whether a trial draws plots: always (``all``), never (``none``), or (``best``) only when its
    objective strictly beats the study's best so far in ``direction``; no best yet counts as beaten."""
    if policy in ("all", "none"):
        return policy == "all"
    if policy != "best":
        raise ValueError(f"reports.plots must be all, best or none, got {policy!r}")
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"mode.direction must be maximize or minimize, got {direction!r}")
    if best_so_far is None or not math.isfinite(best_so_far):
        return True
    return objective > best_so_far if direction == "maximize" else objective < best_so_far


def _attempt(what: str, make: Callable[[], object]) -> None:
    try:
        make()
    except Exception as exc:
        log.warning(f"trial report skipped: {what} failed ({type(exc).__name__}: {exc})", exc_info=True)


def _write_architecture(model: keras.Model, cfg: HPOConfig, out_dir: Path) -> None:
    spec = describe(model, model_settings(cfg.model))
    (out_dir / "architecture.json").write_text(json.dumps(spec, indent=2, default=str))
    (out_dir / "architecture.txt").write_text(summary_text(model), encoding="utf-8")
    _attempt("architecture diagram", lambda: diagram.draw(spec, out_dir))
    _attempt("architecture view", lambda: view.write(spec, out_dir))
    _attempt("architecture glTF", lambda: glb.write(spec, out_dir))


def _gradient_norms(model: keras.Model, data: Any, metrics: Mapping[str, float]) -> dict[str, float]:
    """Per-layer gradient norms: health mode's (already in ``metrics``), else measured the same way."""
    prefix = "health.gradients.norm."
    norms = {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)}
    if norms:
        return norms
    from worker.health import _gradients
    from worker.scoring import HEALTH_SAMPLE

    out: dict[str, float] = {}
    _gradients(model, data.x_train[:HEALTH_SAMPLE], data.y_train[:HEALTH_SAMPLE], out)
    return {key[len("gradients.norm.") :]: v for key, v in out.items() if key.startswith("gradients.norm.")}


def _health(
    model: keras.Model, fit_result: FitResult, data: Any, cfg: HPOConfig, metrics: Mapping[str, float]
) -> tuple[dict[str, float], float | None]:
    """Health components and score: the trial's own (in ``metrics``), else assessed here."""
    from worker.health import COMPONENTS, assess
    from worker.scoring import HEALTH_SAMPLE

    if all(f"health.{name}" in metrics for name in COMPONENTS):
        return {name: metrics[f"health.{name}"] for name in COMPONENTS}, metrics.get("health.score")
    sample = slice(0, HEALTH_SAMPLE)
    report = assess(
        model,
        fit_result.history,
        data.x_train[sample],
        data.y_train[sample],
        data.x_val[sample],
        cfg.mode.weights,
    )
    return report.components, report.score


def _draw_plots(
    model: keras.Model,
    fit_result: FitResult,
    data: Any,
    cfg: HPOConfig,
    metrics: Mapping[str, float],
    out: Path,
) -> None:
    _attempt("training curves", lambda: plots.training_curves(fit_result.history, fit_result.best_epoch, out))
    _attempt(
        "confusion matrix",
        lambda: plots.confusion_matrix(
            data.y_val, plots.predict_classes(model, data.x_val), data.num_classes, out
        ),
    )
    _attempt("gradient norms", lambda: plots.gradient_norms(_gradient_norms(model, data, metrics), out))
    _attempt("weight distributions", lambda: plots.weight_distributions(model, out))
    if cfg.mode.name == "health":
        _attempt(
            "health components",
            lambda: plots.health_components(*_health(model, fit_result, data, cfg, metrics), out),
        )


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    """A cheap content digest (shapes, dtypes, the first 256 examples): no copy of a large dataset."""
    sha = hashlib.sha256()
    for array in (x, y):
        sha.update(str((array.shape, array.dtype.str)).encode())
        sha.update(np.ascontiguousarray(array[:256]).tobytes())
    return sha.hexdigest()[:8]


def _source_url(name: str) -> str:
    """Where a dataset (one ``worker.datasets`` loads) comes from: its documentation or download URL."""
    from worker.gtsrb import FILES
    from worker.keras_datasets import KERAS_SOURCES

    if name == "digits":
        return _SKLEARN_DIGITS
    if name == "gtsrb":
        return FILES[0].origin
    return KERAS_SOURCES[name].files[0].origin


def _dataset_source(cfg: HPOConfig) -> Any:
    """Where the trial's data came from: a built-in dataset's URL, or the loader named and its arguments."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if cfg.dataset.loader is not None:
        return CodeDatasetSource({str(k): str(v) for k, v in cfg.dataset.loader.items()})
    return HTTPDatasetSource(_source_url(cfg.dataset.name))


def log_datasets(data: Any, cfg: HPOConfig) -> None:
    """Record the trial's training, validation (and, when scored, test) splits as MLflow dataset inputs."""
    from mlflow.data.numpy_dataset import from_numpy

    source = _dataset_source(cfg)
    splits = [("training", data.x_train, data.y_train), ("validation", data.x_val, data.y_val)]
    if cfg.trainer.evaluate_test and len(data.x_test):
        splits.append(("testing", data.x_test, data.y_test))
    common = {
        "dataset.fraction": str(cfg.dataset.fraction),
        "dataset.validation_split": str(cfg.dataset.validation_split),
        "split_seed": str(cfg.seed),
    }
    mlflow.log_inputs(
        datasets=[
            from_numpy(x, source=source, targets=y, name=cfg.dataset.name, digest=_digest(x, y))
            for _, x, y in splits
        ],
        contexts=[context for context, _, _ in splits],
        tags_list=[{**common, "examples": str(len(x))} for _, x, _ in splits],
    )


def log_trial_reports(
    model: keras.Model,
    fit_result: FitResult,
    data: Any,
    cfg: HPOConfig,
    objective: float,
    best_so_far: float | None,
    metrics: Mapping[str, float] | None = None,
) -> None:
    """Log the trial's architecture, its plots (as ``cfg.reports.plots`` and ``should_plot`` decide) and
    its datasets to the active MLflow run, and the time that took as metric ``reports_s``.

    ``metrics`` are the trial's scores; health-mode gradient norms and components are taken from them
    rather than measured again.
    """
    started = time.perf_counter()
    metrics = metrics or {}
    drawn = should_plot(cfg.reports.plots, objective, best_so_far, cfg.mode.direction)
    with tempfile.TemporaryDirectory(prefix="hpo-reports-") as tmp:
        arch_dir, plots_dir = Path(tmp, "architecture"), Path(tmp, "plots")
        arch_dir.mkdir()
        _attempt("architecture", lambda: _write_architecture(model, cfg, arch_dir))
        mlflow.log_artifacts(str(arch_dir), "architecture")
        if drawn:
            plots_dir.mkdir()
            _draw_plots(model, fit_result, data, cfg, metrics, plots_dir)
            mlflow.log_artifacts(str(plots_dir), "plots")
    _attempt("dataset inputs", lambda: log_datasets(data, cfg))
    mlflow.set_tag("hpo.plots", "drawn" if drawn else "skipped")
    mlflow.log_metric("reports_s", time.perf_counter() - started)
