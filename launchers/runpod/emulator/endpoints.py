"""Endpoint and template records as RunPod's REST API v2 shows them, with its strict body validation.

A record is the JSON object itself (RunPod's field names), so the REST routes answer it as is and a PATCH
merges into it; :class:`Registry` holds the live endpoint's record and any others created over REST.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from launchers.runpod.emulator import catalog

Record = dict[str, Any]
Check = Callable[[Any], bool]


def _int(low: int, high: int | None = None) -> Check:
    return lambda v: (
        isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)
    )


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _env(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _pools(v: Any) -> bool:
    return _strs(v) and bool(v) and set(v) <= catalog.POOLS


_NESTED: dict[str, dict[str, Check]] = {
    # count 0: the emulator's stand-in for a RunPod CPU endpoint (its GPU catalog prices it at 0)
    "gpu": {"pools": _pools, "count": _int(0, catalog.MAX_GPUS_PER_WORKER), "minCudaVersion": _str},
    "workers": {"min": _int(0), "max": _int(0), "idleTimeout": _int(1, 3600)},
    "scaling": {"type": lambda v: v in ("REQUEST_COUNT", "QUEUE_DELAY"), "requestCount": _int(1),
                "queueDelay": _int(1)},
}  # fmt: skip
_ENDPOINT: dict[str, Check] = {
    "name": _str,
    "type": lambda v: v == "QUEUE",
    "templateId": lambda v: v is None or isinstance(v, str),
    "image": _str,
    "env": _env,
    "disk": _int(1),
    "flashboot": lambda v: v in ("OFF", "FLASHBOOT"),
    "networkVolumes": _strs,
    "timeout": _int(5_001),
}
_TEMPLATE: dict[str, Check] = {
    "name": _str,
    "image": _str,
    "serverless": lambda v: v is True,
    "env": _env,
    "disk": _int(1),
    "category": lambda v: v in ("NVIDIA", "AMD", "CPU"),
}


class Invalid(ValueError):
    """A REST body RunPod would refuse with 400; the message names the bad or unknown fields."""


def validate_endpoint(body: Any) -> None:
    """Check a create or PATCH body for the endpoint fields (nested objects may be partial)."""
    _check_object(body, "endpoint", {**_ENDPOINT, **{k: _is_object for k in _NESTED}})
    for key, fields in _NESTED.items():
        if key in body:
            _check_object(body[key], key, fields)
    workers = body.get("workers", {})
    if "min" in workers and "max" in workers and workers["min"] > workers["max"]:
        raise Invalid("workers.min must not exceed workers.max")


def validate_template(body: Any) -> None:
    _check_object(body, "template", _TEMPLATE)


def _is_object(v: Any) -> bool:
    return isinstance(v, dict)


def _check_object(body: Any, what: str, fields: Mapping[str, Check]) -> None:
    if not isinstance(body, dict):
        raise Invalid(f"the {what} body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise Invalid(f"unknown {what} field(s): {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    bad = sorted(k for k, v in body.items() if not fields[k](v))
    if bad:
        raise Invalid(f"invalid value for {what} field(s): {', '.join(bad)}")


def merge(record: Record, body: Mapping[str, Any]) -> None:
    """Apply a validated PATCH body: nested objects merge key by key, other fields replace."""
    for key, value in body.items():
        if key in _NESTED:
            record[key] = {**record[key], **value}
        else:
            record[key] = value


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_endpoint(endpoint_id: str, body: Mapping[str, Any], defaults: Record) -> Record:
    """A complete endpoint record: ``defaults`` overlaid with a validated create body."""
    record: Record = {
        **defaults,
        **{k: dict(v) for k, v in defaults.items() if isinstance(v, dict)},
        "id": endpoint_id,
        "type": "QUEUE",
        "createdAt": now_iso(),
    }
    merge(record, body)
    if record["workers"]["min"] > record["workers"]["max"]:
        raise Invalid("workers.min must not exceed workers.max")
    return record


class Registry:
    """Every endpoint and template the emulator knows; only ``live_id`` has a job queue and workers."""

    def __init__(self, live: Record) -> None:
        self.live_id = live["id"]
        self.endpoints: dict[str, Record] = {live["id"]: live}
        self.templates: dict[str, Record] = {}

    @property
    def live(self) -> Record:
        return self.endpoints[self.live_id]

    def create_endpoint(self, body: Any) -> Record:
        validate_endpoint(body)
        self._check_template(body)
        template = self.templates.get(body.get("templateId") or "")
        defaults = {**self.live, "env": {}, "networkVolumes": [], "templateId": None}
        if template is not None:
            defaults.update(image=template["image"], env=dict(template["env"]), disk=template["disk"])
        record = new_endpoint(secrets.token_hex(7), body, defaults)
        self.endpoints[record["id"]] = record
        return record

    def patch_endpoint(self, endpoint_id: str, body: Any) -> Record:
        validate_endpoint(body)
        self._check_template(body)
        record = self.endpoints[endpoint_id]
        merged = {**record, **{k: dict(v) for k, v in record.items() if isinstance(v, dict)}}
        merge(merged, body)
        if merged["workers"]["min"] > merged["workers"]["max"]:
            raise Invalid("workers.min must not exceed workers.max")
        record.update(merged)
        return record

    def _check_template(self, body: Mapping[str, Any]) -> None:
        template_id = body.get("templateId")
        if template_id is not None and template_id not in self.templates:
            raise Invalid(f"templateId {template_id!r} is not a known template")

    def create_template(self, body: Any) -> Record:
        validate_template(body)
        missing = sorted({"name", "image"} - set(body))
        if missing:
            raise Invalid(f"missing template field(s): {', '.join(missing)}")
        record: Record = {
            "id": secrets.token_hex(5),
            "serverless": True,
            "env": {},
            "disk": 20,
            "category": "NVIDIA",
        }
        record.update(body)
        self.templates[record["id"]] = record
        return record

    def patch_template(self, template_id: str, body: Any) -> Record:
        """Change a template; endpoints using it take its new image and env (new workers get them)."""
        validate_template(body)
        record = self.templates[template_id]
        record.update(body)
        for endpoint in self.endpoints.values():
            if endpoint.get("templateId") == template_id:
                endpoint.update(image=record["image"], env=dict(record["env"]), disk=record["disk"])
        return record
