"""RunPod's HTTP as hpo's driver sees it, against a scripted local server: errors classified once for both
APIs, ``Retry-After`` honoured, a lost ``/run`` answer told apart from a request that created nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hpo.core.errors import BackendError
from launchers.runpod.client import (
    AnswerLost,
    AuthError,
    Backoff,
    EndpointClient,
    NotFoundError,
    TransientError,
    UnknownJobError,
)
from launchers.runpod.rest import RestClient

# (status code, JSON body, headers), or HANG: answer nothing until the client's read timeout has passed
Answer = tuple[int, Any, dict[str, str]]
HANG: Answer = (-1, None, {})
READ_TIMEOUT_S = 0.3


def ok(body: Any = None) -> Answer:
    return 200, body if body is not None else {}, {}


@dataclass
class FakeRunPod:
    """Both RunPod APIs on one local port (jobs under ``/v2``, REST under ``/rest``), answering each request
    with ``route(method, path, body)``; every request is kept in ``seen`` as (method, path, body)."""

    route: Callable[[str, str, Any], Answer] = lambda method, path, body: (404, {"error": "no route"}, {})
    seen: list[tuple[str, str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    @property
    def rest_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/rest"

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path, _ in self.seen if method in (None, m)]

    def client(self, attempts: int = 3) -> EndpointClient:
        client = EndpointClient(
            "ep", "key", self.api_base, Backoff(base_s=0.01, cap_s=0.05, attempts=attempts)
        )
        client.http.timeout_s = (1.0, READ_TIMEOUT_S)
        return client


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    server_fake = FakeRunPod()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = self.path.split("?")[0]
            server_fake.seen.append((self.command, path, body))
            code, answer, headers = server_fake.route(self.command, path, body)
            if code == HANG[0]:
                time.sleep(READ_TIMEOUT_S * 3)
                return
            data = json.dumps(answer).encode()
            self.send_response(code)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server_fake
    server.shutdown()
    server.server_close()


def test_a_429_waits_as_long_as_retry_after_says(fake: FakeRunPod) -> None:
    answers = iter([(429, {"error": "slow down"}, {"Retry-After": "0.4"}), ok({"jobs": {}})])
    fake.route = lambda method, path, body: next(answers)
    client = fake.client()
    began = time.monotonic()
    assert client.call_with_retries(client.health, "health") == {"jobs": {}}
    assert time.monotonic() - began >= 0.4
    assert Backoff(base_s=0.01).delay(0, TransientError("HTTP 429", retry_after=7.0)) == 7.0


def test_a_run_whose_answer_never_comes_is_lost_not_transient(fake: FakeRunPod) -> None:
    fake.route = lambda method, path, body: HANG
    client = fake.client()
    with pytest.raises(AnswerLost):
        client.run({"x": 1}, 60)
    # a read that times out created nothing: it may simply be tried again
    with pytest.raises(TransientError):
        client.status("job-1")


def test_requests_that_never_reach_runpod_created_nothing() -> None:
    client = EndpointClient("ep", "key", "http://127.0.0.1:9/v2")
    with pytest.raises(TransientError):
        client.run({"x": 1}, 60)


@pytest.mark.parametrize(
    ("code", "error"), [(500, TransientError), (503, TransientError), (400, BackendError)]
)
def test_server_errors_may_be_retried_and_bad_requests_not(
    fake: FakeRunPod, code: int, error: type[Exception]
) -> None:
    fake.route = lambda method, path, body: (code, {"error": "nope"}, {})
    with pytest.raises(error) as caught:
        fake.client().run({"x": 1}, 60)
    assert not isinstance(caught.value, AnswerLost)


def test_a_refused_key_is_one_actionable_line_on_both_apis(fake: FakeRunPod) -> None:
    fake.route = lambda method, path, body: (401, {"error": "Unauthorized"}, {})
    with pytest.raises(AuthError, match="RUNPOD_API_KEY") as caught:
        fake.client().status("job-1")
    assert "\n" not in str(caught.value)
    with pytest.raises(AuthError, match="RUNPOD_API_KEY"):
        RestClient("key", fake.rest_base).endpoint("ep")


def test_not_found_is_an_unknown_job_on_the_jobs_api_and_not_found_on_rest(fake: FakeRunPod) -> None:
    fake.route = lambda method, path, body: (404, {"error": "not found"}, {})
    with pytest.raises(UnknownJobError):
        fake.client().status("job-1")
    with pytest.raises(NotFoundError):
        RestClient("key", fake.rest_base).endpoint("ep")


def test_rest_reads_and_the_gpu_catalog(fake: FakeRunPod) -> None:
    gpus = [{"id": "NVIDIA GeForce RTX 4090", "pool": "ADA_24", "price": {"serverless": 0.69}}]
    routes = {
        ("GET", "/rest/v2/serverless/ep"): ok({"id": "ep", "gpu": {"count": 1}}),
        ("GET", "/rest/v2/catalog/gpus"): ok({"gpus": gpus}),
        ("PATCH", "/rest/v2/serverless/ep"): ok({"id": "ep", "workers": {"max": 3}}),
        ("GET", "/rest/v2/serverless/ep/workers"): ok({"workers": [], "summary": {"total": 0}}),
    }
    fake.route = lambda method, path, body: routes[(method, path)]
    rest = RestClient("key", fake.rest_base)
    assert rest.endpoint("ep")["gpu"] == {"count": 1}
    assert rest.gpu_catalog() == gpus
    assert rest.update_endpoint("ep", {"workers": {"max": 3}})["workers"] == {"max": 3}
    assert rest.workers("ep")["summary"] == {"total": 0}
    assert ("PATCH", "/rest/v2/serverless/ep", {"workers": {"max": 3}}) in fake.seen
