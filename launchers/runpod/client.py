"""HTTP to RunPod with one error classification, retry policy and request pacing, and the endpoint's jobs API.

Requests go through a plain ``requests.Session`` with no urllib3 retries: the caller's ``Backoff``
(exponential, with jitter, or the server's ``Retry-After``) decides when a transient failure is tried again,
so a job handle can schedule its next try instead of blocking. Every request has a connect and a read timeout.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from hpo.core.errors import BackendError

T = TypeVar("T")
_GARBLED = object()

# RunPod allows thousands of status requests per 10 s per endpoint; 50/s leaves room for other clients
MIN_REQUEST_INTERVAL_S = 0.02
# seconds to connect, and to wait for an answer once the request is sent
TIMEOUT_S = (5.0, 20.0)


class TransientError(Exception):
    """A request that may succeed if tried again and created nothing: connection refused or timed out
    before sending, HTTP 429 (``retry_after``: the server's ``Retry-After`` in seconds) or 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AnswerLost(Exception):
    """A request that creates something was sent but its answer never came (read timeout, connection
    dropped): RunPod may or may not have created it, and has no idempotency key to tell."""


class AuthError(BackendError):
    """RunPod refused the API key."""


class NotFoundError(BackendError):
    """RunPod answered 404: no such endpoint, job or template."""


class UnknownJobError(NotFoundError):
    """The endpoint no longer knows the job (RunPod forgets finished jobs after about 30 minutes)."""


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt k waits ``base * 2**k`` seconds, capped, times 0.5-1."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempts: int = 6

    def delay(self, attempt: int, error: TransientError | None = None) -> float:
        """Seconds before try ``attempt + 1``: the server's ``Retry-After`` where it sent one."""
        if error is not None and error.retry_after is not None:
            return error.retry_after
        return min(self.cap_s, self.base_s * 2**attempt) * random.uniform(0.5, 1.0)


class RunPodHttp:
    """One RunPod API base: paced, timed-out requests whose failures are classified once for every caller."""

    def __init__(
        self,
        api_base: str,
        api_key: str,
        backoff: Backoff | None = None,
        timeout_s: tuple[float, float] = TIMEOUT_S,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.backoff = backoff or Backoff()
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        )
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, HTTPAdapter(max_retries=0))
        self._lock = threading.Lock()
        self._next_request = 0.0

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        creates: bool = False,
        not_found: type[NotFoundError] = NotFoundError,
    ) -> Any:
        """Send one request and return its JSON answer (None for an empty one).

        ``creates``: the request creates something, so an answer lost after sending is ``AnswerLost``
        rather than a ``TransientError`` that may be retried blindly.
        """
        url = f"{self.api_base}/{path.lstrip('/')}"
        self._pace()
        try:
            response = self.session.request(method, url, json=body, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            if _never_sent(exc) or not creates:
                raise TransientError(f"{type(exc).__name__} at {url}") from None
            raise AnswerLost(
                f"{method} {url} was sent but its answer was lost ({type(exc).__name__})"
            ) from None
        answer = self._answer(response, url, not_found)
        if answer is _GARBLED:
            if creates:
                raise AnswerLost(f"{method} {url} was answered with no JSON: {response.text[:100]!r}")
            raise TransientError(f"{url} answered with no JSON: {response.text[:100]!r}")
        return answer

    def call_with_retries(self, request: Callable[[], T], what: str, backoff: Backoff | None = None) -> T:
        """Call ``request`` until it succeeds, backing off between transient failures; a failure after the
        last attempt is a ``BackendError``."""
        policy = backoff or self.backoff
        for attempt in range(policy.attempts):
            try:
                return request()
            except TransientError as exc:
                if attempt == policy.attempts - 1:
                    raise BackendError(f"{what}: {exc} (after {policy.attempts} attempts)") from None
                time.sleep(policy.delay(attempt, exc))
        raise AssertionError("unreachable")

    def _answer(self, response: requests.Response, url: str, not_found: type[NotFoundError]) -> Any:
        code = response.status_code
        if code < 300:
            try:
                return response.json() if response.content else None
            except ValueError:
                return _GARBLED
        if code == 429 or code >= 500:
            raise TransientError(f"HTTP {code} from {url}", _retry_after(response) if code == 429 else None)
        if code in (401, 403):
            raise AuthError(
                f"RunPod refused RUNPOD_API_KEY (HTTP {code}) at {self.api_base}: set RUNPOD_API_KEY to a "
                "key with read and write access to this account's serverless endpoints"
            )
        if code == 404:
            raise not_found(f"{url}: not found (404)")
        raise BackendError(f"RunPod answered HTTP {code} at {url}: {_error_text(response)}")

    def _pace(self) -> None:
        """Space requests at least MIN_REQUEST_INTERVAL_S apart, across every caller of this base."""
        with self._lock:
            now = time.monotonic()
            wait = self._next_request - now
            self._next_request = max(now, self._next_request) + MIN_REQUEST_INTERVAL_S
        if wait > 0:
            time.sleep(wait)


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request failed before reaching the server (no connection), so it created nothing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(reason, MaxRetryError) and isinstance(
        reason.reason, NewConnectionError | ConnectTimeoutError
    )


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    return str(data.get("error", data) if isinstance(data, dict) else data)[:300]


class EndpointClient:
    """One RunPod serverless endpoint's jobs API: submit, poll, cancel jobs, read its health, purge its queue.

    Each call is one request: transient failures are the caller's to retry (``call_with_retries`` blocks).
    """

    def __init__(self, endpoint_id: str, api_key: str, api_base: str, backoff: Backoff | None = None) -> None:
        self.http = RunPodHttp(api_base, api_key, backoff)
        self.endpoint_id = endpoint_id
        self.api_base = api_base
        self.backoff = self.http.backoff

    def run(self, payload: dict[str, Any], execution_timeout_s: float, low_priority: bool = False) -> str:
        """Queue a job and return its id; ``low_priority`` jobs never make the endpoint start a worker."""
        policy = {"executionTimeout": int(execution_timeout_s * 1000), "lowPriority": low_priority}
        answer = self.http.request(
            "POST", f"{self.endpoint_id}/run", {"input": payload, "policy": policy}, creates=True
        )
        return str(answer["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object: status, output (progress while running), error, times, worker id."""
        return dict(
            self.http.request("GET", f"{self.endpoint_id}/status/{job_id}", not_found=UnknownJobError)
        )

    def cancel(self, job_id: str) -> None:
        self.http.request("POST", f"{self.endpoint_id}/cancel/{job_id}", not_found=UnknownJobError)

    def health(self) -> dict[str, Any]:
        """Job counts (``jobs``: inQueue, inProgress, ...) and worker counts (``workers``)."""
        return dict(self.http.request("GET", f"{self.endpoint_id}/health"))

    def purge_queue(self) -> None:
        """Cancel every job of the endpoint still waiting in its queue (jobs in progress keep running)."""
        self.http.request("POST", f"{self.endpoint_id}/purge-queue")

    def call_with_retries(self, request: Callable[[], T], what: str, backoff: Backoff | None = None) -> T:
        return self.http.call_with_retries(request, what, backoff)
