"""RunPod's endpoint API through the runpod SDK, with hpo's retry policy and request pacing.

The SDK's own HTTP retries block for seconds at a time; they are switched off so that the backend's
non-blocking backoff (exponential, with jitter) decides when a transient failure is tried again.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from hpo.core.errors import BackendError

# RunPod allows thousands of status requests per 10 s per endpoint; 50/s leaves room for other clients
MIN_REQUEST_INTERVAL_S = 0.02


class TransientError(Exception):
    """A request that may succeed if tried again: connection error, timeout, HTTP 429 or 5xx."""


class AuthError(BackendError):
    """RunPod refused the API key."""


class UnknownJobError(BackendError):
    """The endpoint no longer knows the job (RunPod forgets finished jobs after about 30 minutes)."""


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt k waits ``base * 2**k`` seconds, capped, times 0.5-1."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempts: int = 6

    def delay(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2**attempt) * random.uniform(0.5, 1.0)


class EndpointClient:
    """One RunPod serverless endpoint: submit, poll, cancel jobs and read its health."""

    def __init__(self, endpoint_id: str, api_key: str, api_base: str, backoff: Backoff | None = None) -> None:
        import runpod
        from requests.adapters import HTTPAdapter

        runpod.endpoint_url_base = api_base.rstrip("/")
        self.endpoint = runpod.Endpoint(endpoint_id, api_key=api_key)
        for prefix in ("http://", "https://"):
            self.endpoint.rp_client.rp_session.mount(prefix, HTTPAdapter(max_retries=0))
        self.endpoint_id = endpoint_id
        self.api_base = api_base
        self.backoff = backoff or Backoff()
        self._lock = threading.Lock()
        self._next_request = 0.0

    def run(self, payload: dict[str, Any], execution_timeout_s: float) -> str:
        """Queue a job and return its id."""
        body = {"input": payload, "policy": {"executionTimeout": int(execution_timeout_s * 1000)}}
        return str(self._call(lambda: self.endpoint.rp_client.post(f"{self.endpoint_id}/run", body))["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object: status, output (progress while running), error, times, worker id."""
        return dict(self._call(lambda: self.endpoint.rp_client.get(f"{self.endpoint_id}/status/{job_id}")))

    def cancel(self, job_id: str) -> None:
        self._call(lambda: self.endpoint.rp_client.post(f"{self.endpoint_id}/cancel/{job_id}", None))

    def health(self) -> dict[str, Any]:
        return dict(self._call(lambda: self.endpoint.health(timeout=10)))

    def call_with_retries(self, request: Any, what: str, backoff: Backoff | None = None) -> Any:
        """Call ``request`` (one of this client's methods, bound) until it succeeds, backing off between
        transient failures; a failure after the last attempt is a ``BackendError``."""
        policy = backoff or self.backoff
        for attempt in range(policy.attempts):
            try:
                return request()
            except TransientError as exc:
                if attempt == policy.attempts - 1:
                    raise BackendError(f"{what}: {exc} (after {policy.attempts} attempts)") from None
                time.sleep(policy.delay(attempt))
        raise AssertionError("unreachable")

    def _call(self, request: Any) -> Any:
        import requests
        from runpod.endpoint.helpers import UNAUTHORIZED_MSG

        self._pace()
        try:
            return request()
        except RuntimeError as exc:
            if str(exc) == UNAUTHORIZED_MSG:
                raise AuthError(
                    f"RunPod refused RUNPOD_API_KEY (401 Unauthorized) at {self.api_base}: "
                    "set RUNPOD_API_KEY to a key with access to the endpoint"
                ) from None
            raise
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code == 429 or code >= 500:
                raise TransientError(f"HTTP {code}") from None
            if code == 404:
                raise UnknownJobError(
                    f"endpoint {self.endpoint_id} at {self.api_base}: not found (404)"
                ) from None
            body = exc.response.text[:300] if exc.response is not None else ""
            raise BackendError(f"RunPod answered HTTP {code}: {body}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(type(exc).__name__) from None

    def _pace(self) -> None:
        """Space requests at least MIN_REQUEST_INTERVAL_S apart, across every job of the sweep."""
        with self._lock:
            now = time.monotonic()
            wait = self._next_request - now
            self._next_request = max(now, self._next_request) + MIN_REQUEST_INTERVAL_S
        if wait > 0:
            time.sleep(wait)
