"""Turns a trained model into the numbers a trial reports: its objective, by mode, and the test score."""

from __future__ import annotations

from typing import Any

from hpo.core.schema import ModeConf, TrainerConf
from worker.trainer import FitResult, pipeline

# examples of a fixed training batch (gradient health) and of the validation probe (dead units)
HEALTH_SAMPLE = 256


def score(mode: ModeConf, result: FitResult, data: Any) -> dict[str, float]:
    """The trial's final metrics: ``objective`` (what the sweep optimises) and what it was built from.

    simple: the best epoch's validation accuracy. health: that accuracy blended with the health score
    of the same model (see ``worker.health``), every component logged as ``health.<name>``.
    """
    metrics = {"best_val_accuracy": result.best_value}
    if mode.name == "health":
        from worker.health import assess, blend

        report = assess(
            result.model,
            result.history,
            data.x_train[:HEALTH_SAMPLE],
            data.y_train[:HEALTH_SAMPLE],
            data.x_val[:HEALTH_SAMPLE],
            mode.weights,
        )
        metrics.update({f"health.{k}": v for k, v in {**report.components, **report.measurements}.items()})
        metrics["health.score"] = report.score
        metrics["objective"] = blend(result.best_value, report.score, mode.weights)
    else:
        metrics["objective"] = result.best_value
    if mode.objective not in result.history:
        metrics[mode.objective] = metrics["objective"]
    return metrics


def evaluate_test(result: FitResult, data: Any, cfg: TrainerConf) -> dict[str, float]:
    """Test-split loss and accuracy of the kept model; reported beside the objective, never used by it."""
    if not cfg.evaluate_test or len(data.x_test) == 0:
        return {}
    scores = result.model.evaluate(
        pipeline(data.x_test, data.y_test, result.global_batch, None), return_dict=True, verbose=0
    )
    return {"test_loss": float(scores["loss"]), "test_accuracy": float(scores["accuracy"])}
