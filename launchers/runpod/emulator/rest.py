"""RunPod's REST API v2 under ``/rest``: endpoints, their workers, templates and the GPU catalog.

Only the live endpoint (``--endpoint-id``) has a job queue and workers; endpoints created with
``POST /rest/v2/serverless`` are settings records only, and their ``/v2/{id}`` job routes answer 404.
A PATCH of the live endpoint changes its scaling, idle timeout and GPUs at once (new workers take new GPU
and env settings); a PATCH of a template updates the image and env of the endpoints using it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from launchers.runpod.emulator import catalog
from launchers.runpod.emulator.endpoints import Invalid, Record
from launchers.runpod.emulator.supervisor import SUPERVISOR, Supervisor
from launchers.runpod.emulator.workers import WORKER_STATES, Worker

PREFIX = "/rest/v2"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{PREFIX}/serverless", list_endpoints)
    router.add_post(f"{PREFIX}/serverless", create_endpoint)
    router.add_get(f"{PREFIX}/serverless/{{endpoint_id}}", get_endpoint)
    router.add_patch(f"{PREFIX}/serverless/{{endpoint_id}}", patch_endpoint)
    router.add_get(f"{PREFIX}/serverless/{{endpoint_id}}/workers", endpoint_workers)
    router.add_get(f"{PREFIX}/templates", list_templates)
    router.add_post(f"{PREFIX}/templates", create_template)
    router.add_patch(f"{PREFIX}/templates/{{template_id}}", patch_template)
    router.add_get(f"{PREFIX}/catalog/gpus", gpu_catalog)


async def list_endpoints(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[SUPERVISOR].registry.endpoints.values()))


async def create_endpoint(request: web.Request) -> web.Response:
    registry = request.app[SUPERVISOR].registry
    try:
        return web.json_response(registry.create_endpoint(await _body(request)))
    except Invalid as exc:
        return _error(400, str(exc))


async def get_endpoint(request: web.Request) -> web.Response:
    return web.json_response(_endpoint(request))


async def patch_endpoint(request: web.Request) -> web.Response:
    record = _endpoint(request)
    try:
        return web.json_response(
            request.app[SUPERVISOR].registry.patch_endpoint(record["id"], await _body(request))
        )
    except Invalid as exc:
        return _error(400, str(exc))


async def endpoint_workers(request: web.Request) -> web.Response:
    """The endpoint's current workers; one that is absent has stopped and is billed no more."""
    supervisor = request.app[SUPERVISOR]
    record = _endpoint(request)
    live = record["id"] == supervisor.registry.live_id
    workers = [w for w in supervisor.pool.workers.values() if w.stopped is None] if live else []
    rows = [_worker(supervisor, w) for w in sorted(workers, key=lambda w: w.slot)]
    summary = {state.lower(): sum(row["status"] == state for row in rows) for state in WORKER_STATES}
    return web.json_response({"workers": rows, "summary": {**summary, "total": len(rows)}})


async def list_templates(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[SUPERVISOR].registry.templates.values()))


async def create_template(request: web.Request) -> web.Response:
    registry = request.app[SUPERVISOR].registry
    try:
        return web.json_response(registry.create_template(await _body(request)))
    except Invalid as exc:
        return _error(400, str(exc))


async def patch_template(request: web.Request) -> web.Response:
    registry = request.app[SUPERVISOR].registry
    template_id = request.match_info["template_id"]
    if template_id not in registry.templates:
        raise _not_found(f"template {template_id!r} not found")
    try:
        return web.json_response(registry.patch_template(template_id, await _body(request)))
    except Invalid as exc:
        return _error(400, str(exc))


async def gpu_catalog(request: web.Request) -> web.Response:
    """The built-in GPU catalog; ``product`` may be SERVERLESS (the only product the emulator sells)."""
    product = request.query.get("product", "SERVERLESS")
    if product != "SERVERLESS":
        return _error(400, f"unknown product {product!r}; the emulator's catalog is SERVERLESS only")
    return web.json_response({"gpus": catalog.gpus()})


def _worker(supervisor: Supervisor, worker: Worker) -> dict[str, Any]:
    placed = worker.placed
    started = None
    if placed is not None:
        wall = datetime.now(UTC) - timedelta(seconds=time.monotonic() - placed)
        started = wall.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "id": worker.id,
        "status": worker.state,
        "gpuCount": worker.gpu_count,
        "gpuTypeId": catalog.gpu_type(worker.pool) if worker.gpu_count else None,
        "startedAt": started,
        "uptimeSeconds": None if placed is None else int(time.monotonic() - placed),
    }


def _endpoint(request: web.Request) -> Record:
    endpoint_id = request.match_info["endpoint_id"]
    record = request.app[SUPERVISOR].registry.endpoints.get(endpoint_id)
    if record is None:
        raise _not_found(f"endpoint {endpoint_id!r} not found")
    return record


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise Invalid("the request body is not JSON") from None


def _error(status_code: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status_code)


def _not_found(message: str) -> web.HTTPException:
    return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json")
