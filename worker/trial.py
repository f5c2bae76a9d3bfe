"""The worker's entry point: run one trial from its request and report its result."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hpo.core import interrupts, trial_channel
from hpo.core.errors import HPOError, TrialError
from hpo.core.schema import validate
from hpo.core.trial_identity import trial_params, trial_seed, trial_tags
from worker.stopping import StopRequest, TrialStopped

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
    # an open run to continue (the driver opened it, for a remote worker); None opens a new one
    run_id: str | None = None
    # the study's best objective when the trial was asked, if known (reports.plots=best)
    best_so_far: float | None = None
    # tags the caller adds to the trial's run (a remote worker's id, ...)
    tags: dict[str, str] = field(default_factory=dict)
    # extra Keras callbacks (a remote worker's progress reports)
    callbacks: list[Any] = field(default_factory=list)
    # fail with a DeviceError, before training, when the worker sees fewer GPUs than its hardware
    # profile promises (a RunPod worker); otherwise train on what there is and warn
    require_gpus: bool = False
    # set from another thread to stop the trial within a batch (a RunPod job cancelled or timed out, or a
    # prune through ``hpo.core.trial_channel``)
    stop: StopRequest = field(default_factory=StopRequest)


@dataclass
class TrialResult:
    """What a finished trial reports back."""

    objective: float
    best_epoch: int
    fit_s: float
    trial_s: float
    run_id: str
    # the final metrics logged to the run, and every epoch's Keras metrics
    metrics: dict[str, float]
    history: dict[str, list[float]]
    # the devices the trial found and used
    devices: Any


def run_trial(request: TrialRequest) -> TrialResult:
    """Validate the request, train the model it describes, log everything to MLflow, return the score.

    Raises:
        HPOError: a ``ConfigError``, ``DatasetError`` or ``ModelConfigError`` explaining a bad trial,
            or a ``TrialError`` wrapping any other failure; the MLflow run is marked FAILED either way.
            A ``DeviceError`` (``request.require_gpus`` and too few GPUs) comes before the run opens.
        TrialStopped: ``request.stop`` was set; the run ends KILLED with what it logged, unscored (pruned:
            FINISHED and tagged pruned, a prune that came once training had ended is ignored).
    """
    started = time.perf_counter()
    cfg = validate(request.config)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import mlflow

    from worker import run_logging, runtime
    from worker.datasets import load_dataset
    from worker.distribution import prepare_devices
    from worker.models import build_model
    from worker.progress import EpochProgress
    from worker.reports import log_trial_reports
    from worker.scoring import evaluate_test, score
    from worker.trainer import StopOnRequest, fit

    seed = trial_seed(cfg.seed, request.trial_number)
    runtime.configure(seed, runtime.cpu_threads(cfg.launcher.workers))
    strategy, devices = prepare_devices(
        cfg.hardware.gpus_per_worker, cfg.trainer.mixed_precision, request.require_gpus
    )
    with (
        run_logging.trial_run(
            cfg.mlflow.tracking_uri,
            cfg.mlflow.experiment_name,
            request.parent_run_id,
            f"trial-{request.trial_number}",
            trial_params(request.config, cfg),
            {**trial_tags(cfg, request.trial_number, request.overrides), **request.tags},
            run_id=request.run_id,
            system_metrics=cfg.mlflow.system_metrics,
        ) as run_id,
        trial_channel.trial(request.stop.prune),
    ):
        try:
            run_logging.record_devices(devices)
            data = load_dataset(cfg.dataset, split_seed=cfg.seed)
            request.stop.check()
            result = fit(
                lambda: build_model(cfg.model, data.input_shape, data.num_classes),
                data,
                cfg.trainer,
                seed=seed,
                monitor="val_accuracy",
                maximize=True,
                strategy=strategy,
                callbacks=[
                    StopOnRequest(request.stop),
                    run_logging.EpochLogger(),
                    EpochProgress("val_accuracy"),
                    *request.callbacks,
                ],
            )
            if not request.stop.pruned:
                request.stop.check()
            metrics = score(cfg.mode, result, data) if math.isfinite(result.best_value) else {}
            metrics.update(evaluate_test(result, data, cfg.trainer))
        except TrialStopped as stopped:
            run_logging.record_stop(stopped)
            raise
        except HPOError:
            raise
        except Exception as exc:
            if interrupts.received():
                raise KeyboardInterrupt(f"trial {request.trial_number} stopped") from exc
            log.exception(f"trial {request.trial_number} failed")
            raise TrialError(f"trial {request.trial_number} failed: {type(exc).__name__}: {exc}") from exc
        objective = metrics.get("objective", math.nan)
        if not math.isfinite(objective):
            raise TrialError(f"trial {request.trial_number} diverged: {cfg.mode.objective} was never finite")
        if cfg.mlflow.log_model:
            run_logging.log_keras_model(result.model, data.x_val[:8])
        log_trial_reports(result.model, result, data, cfg, objective, request.best_so_far, metrics)
        trial_s = time.perf_counter() - started
        metrics.update(
            {
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "global_batch": result.global_batch,
                "fit_s": result.fit_s,
                "trial_s": trial_s,
            }
        )
        mlflow.log_metrics(metrics)
    log.info(
        f"trial {request.trial_number}: {cfg.mode.objective}={objective:.4f} "
        f"(fit {result.fit_s:.1f}s of {trial_s:.1f}s)"
    )
    return TrialResult(
        objective, result.best_epoch, result.fit_s, trial_s, run_id, metrics, result.history, devices
    )
