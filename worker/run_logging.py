"""MLflow logging of one trial: a child run under the sweep's parent run, epoch metrics and the model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from hpo.core.closed_runs import note_closed_run
from hpo.core.names import OPTUNA_STATE_TAG, PRUNED_EPOCH_TAG, PRUNED_TAG, error_tag
from hpo.core.store import trial_experiment_id
from worker.stopping import TrialStopped

# seconds between two system-metric samples: trials are short, MLflow's default is 10
SYSTEM_METRICS_INTERVAL_S = 1.0
# the Optuna state of a trial whose run ends so: the state its sweep tells the study (a stopped trial's
# state is decided later, when it runs again; a pruned one's run ends FINISHED, its state PRUNED)
OPTUNA_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL"}
PRUNED_STATE = "PRUNED"


class EpochLogger(keras.callbacks.Callback):
    """Logs every metric Keras reports at the end of an epoch as an MLflow step metric."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)


@contextmanager
def trial_run(
    tracking_uri: str,
    experiment_name: str,
    parent_run_id: str | None,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[str]:
    """Open the trial's run (nested under ``parent_run_id`` when given, or continue the open run
    ``run_id``) and close it with the outcome.

    With ``system_metrics``, MLflow samples CPU, memory, disk, network (and GPU) use into ``system/...``.

    A trial that raises ends FAILED with the error in the ``hpo.error`` tag; one interrupted or stopped
    (``TrialStopped``) ends KILLED, unless it was pruned: a pruned trial's run ends FINISHED (what it
    logged is a sound partial result, not a failure), with the Optuna state PRUNED.
    A run that ends FINISHED or FAILED carries its trial's Optuna state with its end, so the sweep need
    not find and tag it once it has told the study (``hpo.core.closed_runs`` says which run).
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id = trial_experiment_id(client, tracking_uri, experiment_name, parent_run_id)
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
    run = (
        mlflow.start_run(run_id=run_id, tags=dict(tags), log_system_metrics=system_metrics)
        if run_id
        else mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            parent_run_id=parent_run_id,
            tags=dict(tags),
            log_system_metrics=system_metrics,
        )
    )
    try:
        mlflow.log_params(dict(params))
        yield run.info.run_id
    except TrialStopped as stopped:
        if stopped.pruned:
            _end_run(run.info.run_id, "FINISHED", state=PRUNED_STATE)
        else:
            _end_run(run.info.run_id, "KILLED")
        raise
    except (KeyboardInterrupt, SystemExit):
        _end_run(run.info.run_id, "KILLED")
        raise
    except BaseException as exc:
        _end_run(run.info.run_id, "FAILED", error_tag(f"{type(exc).__name__}: {exc}"))
        raise
    else:
        _end_run(run.info.run_id, "FINISHED")


def _end_run(
    run_id: str, status: str, tags: Mapping[str, str] | None = None, state: str | None = None
) -> None:
    """End the active run with ``status``, its tags and the Optuna state ``state`` (by default, the one
    that status decides)."""
    state = state or OPTUNA_STATES.get(status)
    ending = {**(tags or {}), **({OPTUNA_STATE_TAG: state} if state else {})}
    if ending:
        mlflow.set_tags(ending)
    mlflow.end_run(status)
    note_closed_run(run_id, state)


def record_stop(stopped: TrialStopped) -> None:
    """Tag the run with why its trial stopped (pruned: after which epoch), and how many batches and
    seconds the stop took."""
    pruned = {PRUNED_TAG: "true", PRUNED_EPOCH_TAG: str(stopped.epochs)} if stopped.pruned else {}
    mlflow.set_tags({"hpo.stopped": stopped.why, **pruned})
    mlflow.log_metrics(
        {"batches_after_stop": stopped.batches_after_stop, "stop_latency_s": round(stopped.latency_s, 3)}
    )


def record_devices(report: Any) -> None:
    """Tag the run with the devices the trial used, and the mismatch warning when there is one."""
    mlflow.set_tags(
        {
            "hpo.gpus_expected": report.gpus_expected,
            "hpo.gpus_seen": report.gpus_seen,
            "hpo.replicas": report.replicas,
            "hpo.mixed_precision": report.mixed_precision,
        }
    )
    if report.warning:
        mlflow.set_tag("hpo.device_warning", report.warning)


def log_keras_model(model: keras.Model, example: np.ndarray) -> None:
    """Log ``model`` as an MLflow Keras model with its signature (``mlflow.keras.load_model`` loads it)."""
    import tensorflow as tf
    from mlflow.models import infer_signature

    # one eager call: predict() would trace a function of its own for a handful of examples
    signature = infer_signature(example, keras.ops.convert_to_numpy(model(example, training=False)))
    mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
    )
