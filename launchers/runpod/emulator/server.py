"""The aiohttp app: RunPod's ``/v2`` endpoint API, the worker webhooks and the emulator's control routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from launchers.runpod.emulator import protocol, rest
from launchers.runpod.emulator.jobs import NO_OUTPUT, Job
from launchers.runpod.emulator.protocol import FAILED, IN_PROGRESS, MB, TIMED_OUT
from launchers.runpod.emulator.supervisor import SUPERVISOR, Supervisor

log = logging.getLogger("launchers.runpod.emulator")

REQUESTS = web.AppKey("requests", Counter)
WORKER_ROUTES = frozenset({"job-take", "job-take-batch", "job-stop", "job-done", "job-stream", "ping"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(supervisor: Supervisor) -> web.Application:
    """The emulator's web app, serving one endpoint backed by ``supervisor``."""
    app = web.Application(client_max_size=64 * MB, middlewares=[_gate])
    app[SUPERVISOR] = supervisor
    app[REQUESTS] = Counter()
    v2 = "/v2/{endpoint_id}"
    app.router.add_post(f"{v2}/run", run)
    app.router.add_post(f"{v2}/runsync", runsync)
    for method in ("GET", "POST"):
        app.router.add_route(method, f"{v2}/status/{{job_id}}", status)
        app.router.add_route(method, f"{v2}/stream/{{job_id}}", stream)
    app.router.add_post(f"{v2}/cancel/{{job_id}}", cancel)
    app.router.add_post(f"{v2}/retry/{{job_id}}", retry)
    app.router.add_post(f"{v2}/purge-queue", purge_queue)
    app.router.add_get(f"{v2}/health", health)
    app.router.add_get(f"{v2}/job-take/{{worker_id}}", job_take)
    app.router.add_get(f"{v2}/job-take-batch/{{worker_id}}", job_take)
    app.router.add_get(f"{v2}/job-stop/{{worker_id}}", job_stop)
    app.router.add_post(f"{v2}/job-done/{{worker_id}}/{{job_id}}", job_done)
    app.router.add_post(f"{v2}/job-stream/{{worker_id}}/{{job_id}}", job_stream)
    app.router.add_get(f"{v2}/ping/{{worker_id}}", ping)
    rest.add_routes(app.router)
    app.router.add_get("/_emulator/stats", stats)
    app.router.add_get("/_emulator/faults", faults)
    app.router.add_post("/_emulator/faults", faults)
    return app


@web.middleware
async def _gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request, check the API key and the endpoint, and inject the unkind answers when asked.

    Client API and REST requests (never the workers' webhooks) meet brownouts, RunPod's rate limits and
    injected 429/503 errors; a 429 carries ``Retry-After`` in whole seconds, as RunPod's do.
    """
    resource = request.match_info.route.resource
    if resource is None:
        return await handler(request)
    supervisor = request.app[SUPERVISOR]
    parts = resource.canonical.split("/")
    is_rest = parts[1] == "rest"
    route = parts[3] if parts[1] == "v2" else resource.canonical
    request.app[REQUESTS][route] += 1
    if not _authorized(request.headers.get("Authorization", ""), supervisor.config.api_key):
        return _error(401, "Unauthorized: the Authorization header does not carry this endpoint's API key")
    if not (is_rest or (parts[1] == "v2" and route not in WORKER_ROUTES)):
        return await handler(request)
    faults = supervisor.faults
    if (brownout := faults.brownout()) is not None:
        if brownout == "hang":
            return await _hang_and_drop(request, faults.faults.hang_s)
        return _error(503, "Service Unavailable (brownout injected by the emulator)")
    if not is_rest and request.match_info["endpoint_id"] != supervisor.config.endpoint_id:
        return _error(404, f"endpoint {request.match_info['endpoint_id']!r} not found")
    if (wait_s := supervisor.limiter.retry_after(route, is_rest)) is not None:
        faults.injected["rate_limited"] += 1
        return _error(429, f"Too Many Requests: over RunPod's rate limit for {route}", retry_after=wait_s)
    if (code := faults.api_error()) is not None:
        request.app[REQUESTS]["injected_errors"] += 1
        if code == 429:
            return _error(429, "Too Many Requests (fault injected by the emulator)", retry_after=1)
        return _error(code, "Service Unavailable (fault injected by the emulator)")
    return await handler(request)


async def run(request: web.Request) -> web.Response:
    """Queue a job; under the ``lost_answers`` fault the job is queued but its answer never arrives."""
    job = await _submit(request, "run")
    supervisor = request.app[SUPERVISOR]
    if supervisor.faults.claim_lost_answer():
        log.info("fault: job %s queued, its /run answer lost", job.id)
        return await _hang_and_drop(request, supervisor.faults.faults.hang_s)
    return web.json_response({"id": job.id, "status": job.status})


async def runsync(request: web.Request) -> web.Response:
    """Submit a job and wait for it (90 s by default, ``?wait=`` ms); unfinished, it answers its status."""
    low, default, high = protocol.RUNSYNC_WAIT_MS
    try:
        wait_ms = min(max(int(request.query.get("wait", default)), low), high)
    except ValueError:
        return _error(400, f"wait must be a whole number of milliseconds ({low}-{high})")
    job = await _submit(request, "runsync")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(job.done.wait(), wait_ms / 1000)
    return web.json_response(job.status_json())


async def status(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    if (delay := supervisor.faults.faults.status_delay_s) > 0:
        await asyncio.sleep(delay)
    body = _job(request).status_json()
    if supervisor.faults.faults.running_state and body["status"] == IN_PROGRESS:
        body["status"] = "RUNNING"  # RunPod documents RUNNING as a state of a job in progress
    return web.json_response(body)


async def stream(request: web.Request) -> web.Response:
    """The chunks a streaming handler posted since the last ``/stream`` call, with the job's status."""
    job = _job(request)
    chunks, job.stream_sent = job.stream[job.stream_sent :], len(job.stream)
    return web.json_response({"id": job.id, "status": job.status, "stream": chunks})


async def cancel(request: web.Request) -> web.Response:
    job = _job(request)
    request.app[SUPERVISOR].cancel(job)
    return web.json_response({"id": job.id, "status": job.status})


async def retry(request: web.Request) -> web.Response:
    job = _job(request)
    if job.status not in (FAILED, TIMED_OUT):
        return _error(400, f"job {job.id} is {job.status}; only FAILED or TIMED_OUT jobs can be retried")
    request.app[SUPERVISOR].store.retry(job)
    log.info("job %s requeued by /retry", job.id)
    return web.json_response({"id": job.id, "status": job.status})


async def purge_queue(request: web.Request) -> web.Response:
    removed = request.app[SUPERVISOR].store.purge()
    return web.json_response({"removed": removed, "status": "completed"})


async def health(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    workers = supervisor.pool.counts()
    workers["ready"] = workers["idle"] + workers["running"]
    return web.json_response(
        {"jobs": supervisor.store.health_jobs(), "workers": dict(sorted(workers.items()))}
    )


async def job_take(request: web.Request) -> web.Response:
    """A worker's long-poll for work: a job (or a list, for job-take-batch) or 204 after the hold."""
    supervisor = request.app[SUPERVISOR]
    batch = request.path.split("/")[3] == "job-take-batch"
    size = int(request.query.get("batch_size", "1")) if batch else 1
    holds_jobs = request.query.get("job_in_progress", "0") != "0"
    jobs = await supervisor.take(request.match_info["worker_id"], max(size, 1), holds_jobs)
    if not jobs:
        return web.Response(status=204)
    if batch:
        return web.json_response([job.worker_payload() for job in jobs])
    return web.json_response(jobs[0].worker_payload())


async def job_stop(request: web.Request) -> web.Response:
    """The worker's stop-signal long-poll: ``{"jobsToStop": [ids]}`` for its cancelled or timed-out jobs."""
    job_ids = await request.app[SUPERVISOR].stop_signals(request.match_info["worker_id"])
    if not job_ids:
        return web.Response(status=204)
    return web.json_response({"jobsToStop": job_ids})


async def job_done(request: web.Request) -> web.Response:
    """A worker's progress update (``status: IN_PROGRESS``) or final result for the job it holds."""
    supervisor = request.app[SUPERVISOR]
    worker_id, job_id = request.match_info["worker_id"], request.match_info["job_id"]
    job = supervisor.store.get(job_id)
    raw = await _read(request)
    if job is None or supervisor.late(job, worker_id):
        log.info("ignored a post from worker %s for job %s, which it no longer holds", worker_id, job_id)
        return web.json_response({"ignored": True})
    limit = protocol.PAYLOAD_LIMITS[job.source]
    if raw is None or len(raw) > limit:
        size = "over 64" if raw is None else f"{len(raw) / MB:.1f}"
        message = (
            f"output exceeds RunPod's {protocol.limit_mb(job.source)} MB limit for /{job.source} jobs: the "
            f"worker returned {size} MB; store large results elsewhere and return a link"
        )
        supervisor.fail(job, message, output=NO_OUTPUT)
        return _error(400, message)
    try:
        payload = json.loads(raw)
    except ValueError:
        supervisor.fail(job, "the worker posted a result that is not JSON", output=NO_OUTPUT)
        return _error(400, "the result is not JSON")
    if not isinstance(payload, dict):
        payload = {"output": payload}
    if payload.get("status") == IN_PROGRESS:
        supervisor.progress(job, payload.get("output"))
    else:
        supervisor.complete(job, payload)
    return web.json_response({"ok": True})


async def job_stream(request: web.Request) -> web.Response:
    """A streaming handler's partial output, kept for ``/stream``."""
    supervisor = request.app[SUPERVISOR]
    job = supervisor.store.get(request.match_info["job_id"])
    raw = await _read(request)
    if job is None or supervisor.late(job, request.match_info["worker_id"]) or raw is None:
        return web.json_response({"ignored": True})
    with contextlib.suppress(ValueError):
        job.stream.append(json.loads(raw))
    return web.json_response({"ok": True})


async def ping(request: web.Request) -> web.Response:
    """A worker's heartbeat: ``job_id`` lists the jobs it still holds (comma-separated)."""
    held = {job_id for job_id in request.query.get("job_id", "").split(",") if job_id}
    request.app[SUPERVISOR].pinged(request.match_info["worker_id"], held)
    if request.query.get("status") == "unhealthy":
        log.warning(
            "worker %s failed a fitness check: %s", request.match_info["worker_id"], dict(request.query)
        )
    return web.Response(text="OK")


async def stats(request: web.Request) -> web.Response:
    """Counts for tests and benchmarks: requests, injected errors, jobs, worker restarts and pids."""
    counts = request.app[REQUESTS]
    by_route = {k: v for k, v in sorted(counts.items()) if k != "injected_errors"}
    body = {
        "requests": sum(by_route.values()),
        "requests_by_route": by_route,
        "injected_errors": counts["injected_errors"],
    }
    return web.json_response({**body, **request.app[SUPERVISOR].stats()})


async def faults(request: web.Request) -> web.Response:
    """Read or change the faults at runtime: POST a JSON object of fault fields."""
    injector = request.app[SUPERVISOR].faults
    if request.method == "POST":
        try:
            injector.update(await request.json())
        except (ValueError, AttributeError) as exc:
            return _error(400, str(exc))
        log.info("faults set: %s", injector.faults)
    return web.json_response(injector.snapshot())


async def _submit(request: web.Request, source: str) -> Job:
    raw = await _read(request)
    limit = protocol.PAYLOAD_LIMITS[source]
    if raw is None or len(raw) > limit:
        size = "over 64" if raw is None else f"{len(raw) / MB:.1f}"
        raise _http_error(
            400, f"request body is {size} MB, over RunPod's {limit // MB} MB limit for /{source}"
        )
    try:
        return request.app[SUPERVISOR].submit(json.loads(raw), source)
    except ValueError as exc:
        raise _http_error(400, str(exc)) from None


async def _read(request: web.Request) -> bytes | None:
    """The request body, or None when it is larger than the app reads at all."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


def _job(request: web.Request) -> Job:
    job = request.app[SUPERVISOR].store.get(request.match_info["job_id"])
    if job is None:
        raise _http_error(404, f"job {request.match_info['job_id']} not found (unknown, purged or expired)")
    return job


def _authorized(header: str, api_key: str) -> bool:
    """RunPod takes the key bare or as ``Bearer <key>``: the SDK client sends the latter, workers bare."""
    token = header[7:] if header[:7].lower() == "bearer " else header
    return hmac.compare_digest(token.encode(), api_key.encode())


def _error(status_code: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return web.json_response({"error": message}, status=status_code, headers=headers)


async def _hang_and_drop(request: web.Request, hang_s: float) -> web.Response:
    """Hang, then drop the connection without an answer (a brownout or a lost answer)."""
    await asyncio.sleep(hang_s)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=503)


def _http_error(status_code: int, message: str) -> web.HTTPException:
    error = web.HTTPBadRequest if status_code == 400 else web.HTTPNotFound
    return error(text=json.dumps({"error": message}), content_type="application/json")
