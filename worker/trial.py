"""The worker's entry point: run one trial from its request and report its result."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hpo.errors import HPOError, TrialError
from hpo.schema import flatten, validate

log = logging.getLogger(__name__)


@dataclass
class TrialRequest:
    """Everything a worker needs to run one trial."""

    # the trial's resolved hpo config (seed, dataset, model, mode, hardware, trainer, launcher, mlflow)
    config: dict[str, Any]
    # the trial's number in the study; with the study seed it fixes the trial's seed
    trial_number: int
    # the sweep's MLflow parent run; None logs a standalone run
    parent_run_id: str | None = None
    # the sweeper's overrides that define this trial, for the record
    overrides: list[str] = field(default_factory=list)


@dataclass
class TrialResult:
    """What a finished trial reports back."""

    objective: float
    best_epoch: int
    fit_s: float
    trial_s: float
    run_id: str


def run_trial(request: TrialRequest) -> TrialResult:
    """Validate the request, train the model it describes, log everything to MLflow, return the score.

    Raises:
        HPOError: a ``ConfigError``, ``DatasetError`` or ``ModelConfigError`` explaining a bad trial,
            or a ``TrialError`` wrapping any other failure; the MLflow run is marked FAILED either way.
    """
    started = time.perf_counter()
    cfg = validate(request.config)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import mlflow

    from worker import runtime, tracking
    from worker.datasets import load_dataset
    from worker.distribution import prepare_devices
    from worker.models import build_model
    from worker.scoring import evaluate_test, score
    from worker.trainer import fit

    seed = runtime.trial_seed(cfg.seed, request.trial_number)
    runtime.configure(seed, runtime.cpu_threads(cfg.launcher.workers))
    params = flatten({k: request.config[k] for k in ("model", "trainer")})
    params.update(
        {
            "dataset": cfg.dataset.name,
            "dataset.fraction": cfg.dataset.fraction,
            "mode": cfg.mode.name,
            "seed": cfg.seed,
        }
    )
    tags = {
        "hpo.trial_number": str(request.trial_number),
        "hpo.trial_seed": str(seed),
        "hpo.overrides": json.dumps(request.overrides),
        "hpo.backend": cfg.launcher.backend,
        "hpo.hardware": cfg.hardware.name,
    }
    with tracking.trial_run(
        cfg.mlflow.tracking_uri,
        cfg.mlflow.experiment_name,
        request.parent_run_id,
        f"trial-{request.trial_number}",
        params,
        tags,
    ) as run_id:
        try:
            strategy, devices = prepare_devices(cfg.hardware.gpus_per_worker, cfg.trainer.mixed_precision)
            tracking.record_devices(devices)
            data = load_dataset(cfg.dataset, split_seed=cfg.seed)
            result = fit(
                lambda: build_model(cfg.model, cfg.dataset),
                data,
                cfg.trainer,
                seed=seed,
                monitor="val_accuracy",
                maximize=True,
                strategy=strategy,
                callbacks=[tracking.EpochLogger()],
            )
            metrics = score(cfg.mode, result, data) if math.isfinite(result.best_value) else {}
            metrics.update(evaluate_test(result, data, cfg.trainer))
        except HPOError:
            raise
        except Exception as exc:
            log.exception(f"trial {request.trial_number} failed")
            raise TrialError(f"trial {request.trial_number} failed: {type(exc).__name__}: {exc}") from exc
        objective = metrics.get("objective", math.nan)
        if not math.isfinite(objective):
            raise TrialError(f"trial {request.trial_number} diverged: {cfg.mode.objective} was never finite")
        if cfg.mlflow.log_model:
            tracking.log_keras_model(result.model, data.x_val[:8])
        trial_s = time.perf_counter() - started
        mlflow.log_metrics(
            {
                **metrics,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "global_batch": result.global_batch,
                "fit_s": result.fit_s,
                "trial_s": trial_s,
            }
        )
    log.info(
        f"trial {request.trial_number}: {cfg.mode.objective}={objective:.4f} "
        f"(fit {result.fit_s:.1f}s of {trial_s:.1f}s)"
    )
    return TrialResult(objective, result.best_epoch, result.fit_s, trial_s, run_id)
