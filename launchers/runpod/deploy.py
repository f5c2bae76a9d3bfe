"""Deploy hpo's worker image as a RunPod serverless endpoint, and check an endpoint against a profile.

Both read the config a sweep would compose (the same profiles and overrides), so the endpoint they create
or check is the one ``python -m hpo -m hardware=runpod_<N>gpu ...`` expects. Templates and endpoints are
found by name, so deploying again updates them instead of creating duplicates.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hydra import compose, initialize_config_dir

from hpo.core.errors import BackendError, ConfigError
from hpo.core.schema import HPOConfig, register_configs, validate
from launchers.runpod.backend import API_KEY_ENV, ENDPOINT_ENV
from launchers.runpod.client import AnswerLost, NotFoundError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GPUS_ENV = "HPO_GPUS_PER_WORKER"
RUNPOD_PROFILES = "hardware=runpod_1gpu, runpod_2gpu or runpod_4gpu"


class RestAPI(Protocol):
    """The part of RunPod's REST API (``launchers.runpod.rest.RestClient``) that deploy and status use."""

    def endpoint(self, endpoint_id: str) -> dict[str, Any]: ...
    def endpoints(self) -> list[dict[str, Any]]: ...
    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def workers(self, endpoint_id: str) -> dict[str, Any]: ...
    def templates(self) -> list[dict[str, Any]]: ...
    def create_template(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def gpu_catalog(self) -> list[dict[str, Any]]: ...


def load_config(overrides: Sequence[str]) -> HPOConfig:
    """hpo's config composed from conf/ with ``overrides``, exactly as a sweep composes it, and checked."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", list(overrides))
    return validate(cfg)


def require_runpod(cfg: HPOConfig) -> None:
    """Refuse a profile whose trials do not run on RunPod: there is no endpoint to deploy or check."""
    if cfg.hardware.backend != "runpod":
        raise ConfigError(
            f"hardware={cfg.hardware.name} runs trials on this machine, not on RunPod: pick {RUNPOD_PROFILES}"
        )


def api_key() -> str:
    """The RunPod API key, from the environment only (never from a config file)."""
    if key := os.environ.get(API_KEY_ENV):
        return key
    raise ConfigError(
        f"{API_KEY_ENV} is not set: export your RunPod API key (hpo reads it from the environment)"
    )


def endpoint_name(cfg: HPOConfig) -> str:
    """The name of the endpoint and its template: ``launcher.runpod.deploy.name``, else hpo-<profile>."""
    return cfg.launcher.runpod.deploy.name or f"hpo-{cfg.hardware.name}"


def template_body(cfg: HPOConfig) -> dict[str, Any]:
    """The serverless template: the worker image and the GPU count each worker must see (GPUs only)."""
    hardware, deploy = cfg.hardware, cfg.launcher.runpod.deploy
    if hardware.gpus_per_worker < 1 or not hardware.gpu_pools:
        raise ConfigError(
            f"hardware={hardware.name} names no GPUs to deploy (gpus_per_worker {hardware.gpus_per_worker}, "
            f"gpu_pools {list(hardware.gpu_pools)}): deploy makes GPU endpoints; pick {RUNPOD_PROFILES}, "
            "or create a CPU endpoint in RunPod's console"
        )
    if not deploy.image:
        raise ConfigError(
            "launcher.runpod.deploy.image is not set: build and push the worker image (see the README's "
            "RunPod section), then pass launcher.runpod.deploy.image=<registry>/hpo-worker:<tag>"
        )
    return {
        "name": endpoint_name(cfg),
        "image": deploy.image,
        "serverless": True,
        "env": {GPUS_ENV: str(hardware.gpus_per_worker)},
        "disk": deploy.disk_gb,
        "category": "NVIDIA",
    }


def endpoint_body(cfg: HPOConfig, template_id: str) -> dict[str, Any]:
    """The queue endpoint: the profile's GPUs, 0 to ``launcher.workers`` workers, a worker per queued job."""
    deploy = cfg.launcher.runpod.deploy
    return {
        "name": endpoint_name(cfg),
        "type": "QUEUE",
        "templateId": template_id,
        "gpu": {
            "pools": list(cfg.hardware.gpu_pools),
            "count": cfg.hardware.gpus_per_worker,
            "minCudaVersion": deploy.min_cuda_version,
        },
        "workers": {"min": 0, "max": cfg.launcher.workers, "idleTimeout": deploy.idle_timeout_s},
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
        "flashboot": "FLASHBOOT" if deploy.flashboot else "OFF",
        "networkVolumes": [deploy.network_volume_id] if deploy.network_volume_id else [],
        "timeout": cfg.launcher.timeout_min * 60_000,
    }


def changes(current: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The fields of ``wanted`` that ``current`` lacks or holds another value for, as ``key: old -> new``."""
    out = []
    for key, value in wanted.items():
        name = f"{prefix}{key}"
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out += changes(old, value, f"{name}.")
        elif (old or None) != (value or None):  # an absent field is as good as an empty or zero one
            out.append(f"{name}: {old!r} -> {value!r}")
    return out


@dataclass
class Applied:
    """What deploy did to one resource: created, updated (with the changed fields) or left unchanged."""

    kind: str
    name: str
    id: str
    action: str
    changed: list[str] = field(default_factory=list)

    def line(self) -> str:
        detail = f": {'; '.join(self.changed)}" if self.action == "updated" else ""
        return f"{self.kind} {self.name} ({self.id}): {self.action}{detail}"


def _apply(
    kind: str,
    existing: list[dict[str, Any]],
    body: dict[str, Any],
    create: Callable[[dict[str, Any]], dict[str, Any]],
    update: Callable[[str, dict[str, Any]], dict[str, Any]],
) -> Applied:
    """Create the resource named ``body["name"]``, or update the one that exists if it differs."""
    name = body["name"]
    found = next((item for item in existing if item.get("name") == name), None)
    if found is None:
        try:
            return Applied(kind, name, str(create(body)["id"]), "created")
        except AnswerLost as exc:
            raise BackendError(
                f"{exc}: deploy again, it finds the {kind} by name if it was created"
            ) from None
    resource_id = str(found["id"])
    if diff := changes(found, body):
        update(resource_id, body)
        return Applied(kind, name, resource_id, "updated", diff)
    return Applied(kind, name, resource_id, "unchanged")


def deploy(cfg: HPOConfig, rest: RestAPI) -> list[Applied]:
    """Create or update the profile's template, then its endpoint; the endpoint comes last."""
    require_runpod(cfg)
    template = _apply(
        "template", rest.templates(), template_body(cfg), rest.create_template, rest.update_template
    )
    endpoint = _apply(
        "endpoint",
        rest.endpoints(),
        endpoint_body(cfg, template.id),
        rest.create_endpoint,
        rest.update_endpoint,
    )
    return [template, endpoint]


def usage_lines(cfg: HPOConfig, endpoint_id: str, overrides: Sequence[str]) -> list[str]:
    """The shell lines that run a sweep on the endpoint: its id, then the sweep with the same settings."""
    sweep = [o for o in overrides if not o.lstrip("+~").startswith("launcher.runpod.deploy.")]
    if not any(o.startswith("hardware=") for o in sweep):
        sweep.insert(0, f"hardware={cfg.hardware.name}")
    return [f"export {ENDPOINT_ENV}={endpoint_id}", f"uv run python -m hpo -m {shlex.join(sweep)}"]


def configured_endpoint(cfg: HPOConfig) -> str:
    """The endpoint a sweep would use: RUNPOD_ENDPOINT_ID, else ``launcher.runpod.endpoint_id``."""
    if found := os.environ.get(ENDPOINT_ENV) or cfg.launcher.runpod.endpoint_id:
        return found
    raise ConfigError(
        f"no RunPod endpoint: set {ENDPOINT_ENV} or launcher.runpod.endpoint_id to your endpoint's id"
    )


@dataclass
class Report:
    """An endpoint's settings, workers and price in plain lines, and the problems that stop a sweep."""

    lines: list[str]
    problems: list[str]


def status(cfg: HPOConfig, rest: RestAPI, endpoint_id: str) -> Report:
    """Read an endpoint and compare it with what a sweep with ``cfg`` expects of it."""
    require_runpod(cfg)
    try:
        endpoint = rest.endpoint(endpoint_id)
    except NotFoundError:
        raise ConfigError(
            f"RunPod knows no endpoint {endpoint_id}: check {ENDPOINT_ENV} or launcher.runpod.endpoint_id"
        ) from None
    gpu = endpoint.get("gpu") or {}
    workers = endpoint.get("workers") or {}
    pools = list(gpu.get("pools") or [])
    count = int(gpu.get("count") or 0)
    volumes = endpoint.get("networkVolumes") or []
    lines = [
        f"endpoint {endpoint.get('name')} ({endpoint_id})",
        f"  image: {endpoint.get('image') or _template_image(rest, endpoint.get('templateId'))}",
        f"  GPUs: {count} per worker, from {', '.join(pools) or 'no pool'}; "
        f"CUDA {gpu.get('minCudaVersion')}+",
        f"  workers: min {workers.get('min')}, max {workers.get('max')}, "
        f"idle timeout {workers.get('idleTimeout')} s",
        f"  flashboot: {'on' if endpoint.get('flashboot') == 'FLASHBOOT' else 'off'}",
        f"  network volume: {', '.join(volumes) or 'none'}",
        f"  running now: {_summary(rest.workers(endpoint_id).get('summary') or {})}",
        *_prices(cfg, rest, pools, count),
    ]
    problems = []
    if workers.get("max") == 0:
        problems.append("max workers is 0: the endpoint starts no worker, so no job would ever run")
    if count != cfg.hardware.gpus_per_worker:
        problems.append(
            f"each worker gets {count} GPU(s), but hardware={cfg.hardware.name} trains on "
            f"{cfg.hardware.gpus_per_worker}: deploy again with this profile, or pick the matching one"
        )
    if 0 < int(workers.get("max") or 0) < cfg.launcher.workers:
        problems.append(
            f"max workers {workers.get('max')} is below launcher.workers={cfg.launcher.workers}: "
            "the extra jobs would wait in the queue"
        )
    return Report(lines, problems)


def _template_image(rest: RestAPI, template_id: str | None) -> str:
    template = next((t for t in rest.templates() if t.get("id") == template_id), {})
    return str(template.get("image") or "unknown")


def _summary(summary: Mapping[str, Any]) -> str:
    """The workers by state, such as ``3 worker(s): 1 running, 2 idle``, or ``no worker``."""
    states = ("running", "idle", "initializing", "throttled", "unhealthy")
    counts = ", ".join(f"{summary[state]} {state}" for state in states if summary.get(state))
    return f"{summary.get('total', 0)} worker(s): {counts}" if counts else "no worker"


def _prices(cfg: HPOConfig, rest: RestAPI, pools: list[str], count: int) -> list[str]:
    """A worker-hour's catalog price in each of the endpoint's pools (one GPU's price times the count)."""
    override = cfg.hardware.price_per_hour
    if override is not None:
        return [f"  price: ${override:.2f} per worker-hour (hardware.price_per_hour, not the catalog)"]
    catalog = rest.gpu_catalog()
    lines = []
    for pool in pools:
        prices = sorted(
            float(g["price"]["serverless"])
            for g in catalog
            if g.get("pool") == pool and (g.get("price") or {}).get("serverless") is not None
        )
        if not prices:
            lines.append(f"  price in {pool}: not in RunPod's GPU catalog")
            continue
        low, high = prices[0] * count, prices[-1] * count
        span = f"${low:.2f}" if low == high else f"${low:.2f} to ${high:.2f}"
        lines.append(f"  price in {pool}: {span} per worker-hour ({count} x one GPU's catalog price)")
    return lines
