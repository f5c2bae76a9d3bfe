"""The RunPod backend: each trial is a job on a RunPod serverless endpoint running hpo's worker image.

The API key is read from ``RUNPOD_API_KEY`` only, never from a config file, so it cannot end up in a
saved config, a log or an MLflow param. Before any trial is asked, the endpoint's health is read and its
settings checked against the hardware profile; while the sweep runs, a cost meter follows its workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpo.core.errors import BackendError, ConfigError, EndpointError
from hpo.core.names import PARENT_RUN_ENV
from hpo.core.payload import PROTOCOL_VERSION, TrialPayload, UserCode, payload_config
from hpo.core.schema import RunPodConf, validate
from hpo.core.store import resolve_tracking_uri
from hpo.core.trial_identity import trial_params, trial_tags
from hpo.core.trial_record import TrialRunRecords
from hpo.core.user_code import code_bundle, target_packages
from launchers.backend import Backend
from launchers.hydra_job import JobSpec
from launchers.runpod.client import AuthError, Backoff, EndpointClient, NotFoundError
from launchers.runpod.cost import CostMeter, PriceList
from launchers.runpod.job import Fleet, JobPolicy, RunPodJobHandle
from launchers.runpod.rest import RestClient

log = logging.getLogger(__name__)

API_KEY_ENV = "RUNPOD_API_KEY"
ENDPOINT_ENV = "RUNPOD_ENDPOINT_ID"
# a few quick tries at start: an endpoint that is down should not hold the sweep for long
HEALTH_BACKOFF = Backoff(base_s=0.25, attempts=4)


class EndpointUnreachable(BackendError):
    """The endpoint did not answer its health check: down, unknown, or the network is out."""


@dataclass
class RunPodSettings:
    """The launcher's runpod settings, with the secrets and ids resolved from the environment."""

    endpoint_id: str
    api_key: str
    api_base: str
    rest_api_base: str = "https://api.runpod.io"

    @classmethod
    def from_launcher(cls, runpod: RunPodConf) -> RunPodSettings:
        endpoint_id = os.environ.get(ENDPOINT_ENV) or runpod.endpoint_id
        if not endpoint_id:
            raise ConfigError(
                f"no RunPod endpoint: set {ENDPOINT_ENV} or launcher.runpod.endpoint_id to your endpoint's id"
            )
        api_key = os.environ.get(API_KEY_ENV)
        if not api_key:
            raise ConfigError(
                f"{API_KEY_ENV} is not set: export your RunPod API key (hpo reads it from the environment "
                "only, never from a config file)"
            )
        return cls(endpoint_id, api_key, runpod.api_base, runpod.rest_api_base)


class RunPodBackend(Backend):
    """Submits trials to one endpoint and hands back non-blocking job handles.

    ``queue_ahead`` jobs more than the sweep's workers are kept on the endpoint: held by workers that
    train another trial (``worker.serverless``) or waiting in its queue, so a worker that finishes starts
    its next trial at once instead of idling until the driver has polled its job's end and submitted another.
    """

    def __init__(
        self,
        settings: RunPodSettings,
        policy: JobPolicy,
        records: TrialRunRecords,
        queue_ahead: int = 0,
        workers: int = 1,
        gpus_per_worker: int = 1,
    ) -> None:
        self.records = records
        self.client = EndpointClient(settings.endpoint_id, settings.api_key, settings.api_base)
        self.rest = RestClient(settings.api_key, settings.rest_api_base, HEALTH_BACKOFF)
        self.policy = policy
        self.queue_ahead = queue_ahead
        # the user's code by the packages the trials name, zipped at the first trial that names them
        self._user_code: dict[tuple[str, ...], UserCode | None] = {}
        self.health = self._check_health()
        endpoint = self._read_endpoint()
        check_endpoint(endpoint, gpus_per_worker, workers)
        gpu = endpoint.get("gpu") or {}
        self.meter = CostMeter(
            self.rest,
            settings.endpoint_id,
            PriceList(
                policy.price_per_hour,
                self._catalog(policy),
                list(gpu.get("pools") or []),
                int(gpu.get("count") or gpus_per_worker),
            ),
            float((endpoint.get("workers") or {}).get("idleTimeout") or 0),
            policy.poll_interval_s,
        )
        self.fleet = Fleet(settings.endpoint_id, workers, self.meter)
        self.meter.start()

    def _check_health(self) -> dict[str, Any]:
        where = f"RunPod endpoint {self.client.endpoint_id} at {self.client.api_base}"
        client = self.client
        health = _reach(where, lambda: client.call_with_retries(client.health, where, HEALTH_BACKOFF))
        log.info(f"{where}: workers {health.get('workers', {})}")
        return dict(health)

    def _read_endpoint(self) -> dict[str, Any]:
        """The endpoint's settings, through RunPod's REST API."""
        where = f"RunPod endpoint {self.client.endpoint_id} at {self.rest.rest_api_base}"
        return dict(_reach(where, lambda: self.rest.endpoint(self.client.endpoint_id)))

    def _catalog(self, policy: JobPolicy) -> list[dict[str, Any]] | None:
        """RunPod's serverless GPU prices, unless the profile sets its own (None where unreadable)."""
        if policy.price_per_hour is not None:
            return []
        try:
            return self.rest.gpu_catalog()
        except BackendError as exc:
            log.warning(f"RunPod's GPU catalog at {self.rest.rest_api_base} could not be read: {exc}")
            return None

    def spent_usd(self) -> float | None:
        """USD billed so far by the endpoint's workers (cold starts and idle time included)."""
        return self.meter.spent_usd()

    def cost_report(self) -> dict[str, float] | None:
        """The sweep's cost, asked once it has ended: ``cost_usd`` split into execution, cold start and idle,
        worker seconds and the price per worker-hour, with the idle tail of the workers still up (it closes
        the meter, as ``close`` does)."""
        self.meter.finish()
        return self.meter.report()

    def close(self) -> None:
        """Stop following the workers and count each one's idle tail (billed until its idle timeout)."""
        self.meter.finish()

    def submit(self, spec: JobSpec, slot: int) -> RunPodJobHandle:
        """Open the trial's run (or continue ``spec.run_id``, a resumed trial's) and return a handle that
        queues the job on its first poll."""
        return self._handle(spec, job_id=None, run_id=spec.run_id)

    def attach(self, spec: JobSpec, job_id: str, run_id: str | None) -> RunPodJobHandle:
        """Follow a job an earlier driver submitted (its result is kept about 30 minutes by RunPod);
        a job the endpoint no longer knows is submitted again, as the same trial and run."""
        return self._handle(spec, job_id=job_id, run_id=run_id)

    def _handle(self, spec: JobSpec, job_id: str | None, run_id: str | None) -> RunPodJobHandle:
        config = payload_config(spec.config)
        cfg = validate(config)
        code = self._code(config)
        tracking_uri = resolve_tracking_uri(cfg.mlflow.tracking_uri, str(spec.config.hydra.runtime.cwd))
        config["mlflow"]["tracking_uri"] = tracking_uri
        record = (
            self.records(tracking_uri, run_id)
            if run_id
            else self.records.open(
                tracking_uri,
                cfg.mlflow.experiment_name,
                os.environ.get(PARENT_RUN_ENV),
                f"trial-{spec.num}",
                trial_params(config, cfg),
                {**trial_tags(cfg, spec.num, spec.overrides), "hpo.backend": "runpod"},
            )
        )
        payload = TrialPayload(
            protocol=PROTOCOL_VERSION,
            config=config,
            gpus_expected=cfg.hardware.gpus_per_worker,
            overrides=list(spec.overrides),
            best_so_far=spec.best_so_far,
            code=code,
        )
        payload.trial.study = str(spec.config.hydra.sweeper.get("study_name") or "hpo")
        payload.trial.number = spec.num
        payload.trial.seed = cfg.seed
        payload.mlflow.run_id = record.run_id if cfg.mlflow.log_from == "worker" else None
        handle = RunPodJobHandle(self.client, spec, payload.to_json(), record, self.policy, self.fleet)
        if job_id is not None:
            handle.follow(job_id)
        return handle

    def _code(self, config: dict[str, Any]) -> UserCode | None:
        """The user's packages ``config`` names, shipped with the job (the same snapshot for the whole sweep,
        which a worker unpacks once)."""
        names = tuple(target_packages(config))
        if names not in self._user_code:
            self._user_code[names] = UserCode.of(code_bundle(config))
        return self._user_code[names]


def check_endpoint(endpoint: dict[str, Any], gpus_per_worker: int, workers: int) -> None:
    """Refuse an endpoint that cannot run the sweep's trials as the hardware profile promises them."""
    name = endpoint.get("name") or endpoint.get("id")
    count = (endpoint.get("gpu") or {}).get("count")
    if count is not None and int(count) != gpus_per_worker:
        raise EndpointError(
            f"RunPod endpoint {name} gives each worker {count} GPU(s) but the hardware profile asks for "
            f"{gpus_per_worker}: run `python -m launchers.runpod deploy` with this profile, or pick the "
            f"hardware profile that matches the endpoint (e.g. hardware=runpod_{count}gpu)"
        )
    limits = endpoint.get("workers") or {}
    most = limits.get("max")
    if most is None:
        return
    if int(most) == 0:
        raise EndpointError(
            f"RunPod endpoint {name} allows 0 workers (RunPod sets max workers to 0 on endpoints idle for 7 "
            "days / capped accounts): raise it in the console or re-run deploy"
        )
    if int(most) < workers:
        log.warning(
            f"RunPod endpoint {name} allows {most} workers but launcher.workers={workers}: only {most} "
            "trials will train at once (raise max workers in the console or re-run deploy)"
        )


def _reach(where: str, request: Callable[[], Any]) -> Any:
    """``request``'s answer; an endpoint that is unknown or cannot be reached is ``EndpointUnreachable``
    (which ``launcher.runpod.fallback=local`` may turn into a local sweep), a refused key an ``AuthError``."""
    try:
        return request()
    except NotFoundError:
        raise EndpointUnreachable(f"{where}: no such endpoint (404); check {ENDPOINT_ENV}") from None
    except AuthError:
        raise
    except BackendError as exc:
        raise EndpointUnreachable(f"{where} is unreachable: {exc}") from None
