"""RunPod's REST API v2: serverless endpoints, their workers, templates and the GPU catalog.

Reads are retried through transient failures (``Backoff``); creates and updates are retried only where
nothing was created (connect errors, 429, 5xx), and an answer lost after sending is ``AnswerLost``.
"""

from __future__ import annotations

from typing import Any

from launchers.runpod.client import Backoff, RunPodHttp


class RestClient:
    """The REST API v2 at ``rest_api_base`` (real: https://api.runpod.io; the emulator: ``<base>/rest``)."""

    def __init__(self, api_key: str, rest_api_base: str, backoff: Backoff | None = None) -> None:
        self.http = RunPodHttp(rest_api_base, api_key, backoff)
        self.rest_api_base = rest_api_base

    def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's settings: ``gpu`` (pools, count), ``workers`` (min, max, idleTimeout), ..."""
        return dict(self._call("GET", f"v2/serverless/{endpoint_id}"))

    def endpoints(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "v2/serverless"))

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "v2/serverless", body, creates=True))

    def update_endpoint(self, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change the fields in ``body`` (the others keep their values)."""
        return dict(self._call("PATCH", f"v2/serverless/{endpoint_id}", body))

    def workers(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's workers now (``workers``: id, status, gpuTypeId, startedAt, ...) and their
        ``summary`` by status; a worker absent from the list has stopped."""
        return dict(self._call("GET", f"v2/serverless/{endpoint_id}/workers"))

    def templates(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "v2/templates"))

    def create_template(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "v2/templates", body, creates=True))

    def update_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PATCH", f"v2/templates/{template_id}", body))

    def gpu_catalog(self) -> list[dict[str, Any]]:
        """Serverless GPU types: ``id``, ``pool``, ``price.serverless`` (USD per hour of one GPU), ..."""
        answer = self._call("GET", "v2/catalog/gpus", params={"product": "SERVERLESS"})
        return list(answer.get("gpus", []) if isinstance(answer, dict) else answer)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        creates: bool = False,
    ) -> Any:
        return self.http.call_with_retries(
            lambda: self.http.request(method, path, body, params, creates=creates),
            f"RunPod REST {method} /{path}",
        )
