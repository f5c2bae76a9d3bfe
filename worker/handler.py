"""The RunPod serverless handler: validates a trial payload, runs the trial, returns its result as JSON.

Failures of the trial itself come back as a JSON error with an ``hpo_error`` key, so the driver can tell
them (never retried) from the infrastructure's (a lost worker, a timeout, too few GPUs: resubmitted).
A trial stopped by RunPod returns nothing: the SDK posts no result for a stopped job.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from typing import Any

from hpo.core import trial_channel
from hpo.core.errors import DatasetError, DeviceError, HPOError
from hpo.core.payload import parse_payload
from worker.stopping import StopRequest, TrialStopped

log = logging.getLogger(__name__)

# RunPod's payload limit for /run jobs, which covers results too (10 MB, counted as 10**6 bytes):
# https://docs.runpod.io/serverless/workers/handler-functions#payload-limits
MAX_RESULT_BYTES = 10_000_000


def worker_id() -> str:
    """This worker's id as RunPod names it (the pod id), or the host name outside RunPod."""
    return os.environ.get("RUNPOD_POD_ID") or socket.gethostname()


def error_output(kind: str, message: str) -> dict[str, str]:
    """A handler return value that fails the job with a message the driver recognises as the trial's."""
    return {"error": json.dumps({"hpo_error": kind, "message": message, "worker_id": worker_id()})}


def handle(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
    """Run the trial in ``job["input"]`` and return its objective, metrics, timings and (by default) run.

    ``stop``, set when RunPod stops the job, ends the trial within a batch.

    Raises:
        TrialStopped: ``stop`` was set; the trial's run ended KILLED.
    """
    try:
        payload = parse_payload(job.get("input"))
    except HPOError as exc:
        log.error(f"refused payload: {exc}")
        return error_output("payload", str(exc))
    from hpo.core.run_bundle import bundle_size, pack_run
    from worker.progress import RunPodProgress
    from worker.trial import TrialRequest, run_trial

    with tempfile.TemporaryDirectory(prefix="hpo-trial-") as tmp:
        config = payload.config
        ship_run = payload.mlflow.run_id is None
        if ship_run:
            config["mlflow"]["tracking_uri"] = f"sqlite:///{tmp}/mlflow.db"
        request = TrialRequest(
            config=config,
            trial_number=payload.trial.number,
            overrides=payload.overrides,
            run_id=payload.mlflow.run_id,
            best_so_far=payload.best_so_far,
            tags={
                "hpo.worker_id": worker_id(),
                "hpo.backend": "runpod",
                **({"hpo.code_sha256": payload.code.sha256} if payload.code else {}),
            },
            require_gpus=True,
            stop=stop,
        )
        trial_channel.set_sink(RunPodProgress(job))
        try:
            result = run_trial(request)
        except TrialStopped as stopped:
            batches, took = stopped.batches_after_stop, stopped.latency_s
            log.info(f"job {job.get('id')} stopped after {batches} batch(es), {took:.1f} s")
            raise
        except DeviceError as exc:
            return error_output("devices", str(exc))
        except HPOError as exc:
            return error_output("dataset" if isinstance(exc, DatasetError) else "trial", str(exc))
        output: dict[str, Any] = {
            "objective": result.objective,
            "metrics": result.metrics,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "fit_s": result.fit_s,
            "trial_s": result.trial_s,
            "worker_id": worker_id(),
            "gpus_seen": result.devices.gpus_seen,
            "device_warning": result.devices.warning,
        }
        if ship_run:
            output["run"] = pack_run(config["mlflow"]["tracking_uri"], result.run_id)
    size = bundle_size(output)
    if size > MAX_RESULT_BYTES:
        return error_output(
            "trial",
            f"the trial's result is {size / 1e6:.1f} MB, over RunPod's {MAX_RESULT_BYTES / 1e6:.0f} MB "
            "output limit (the model is shipped back in it): set mlflow.log_model=false, or let workers log "
            "to a tracking server they can reach (mlflow.tracking_uri=http://... mlflow.log_from=worker)",
        )
    return output
