"""MLflow logging of one trial: a child run under the sweep's parent run, epoch metrics and the model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from hpo.schema import trial_experiment_id
from hpo.sqlite_stores import commit_through_write_ahead_log

# seconds between two system-metric samples: trials are short, MLflow's default is 10
SYSTEM_METRICS_INTERVAL_S = 1.0


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

    A trial that raises ends FAILED with the error in the ``hpo.error`` tag; one interrupted ends KILLED.
    """
    commit_through_write_ahead_log()
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
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("hpo.error", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


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

    signature = infer_signature(example, model.predict(example, verbose=0))
    mlflow.keras.log_model(
        model,
        name="model",
        signature=signature,
        pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
    )
