"""The RunPod backend's checks at start, against a scripted endpoint: an endpoint that cannot run the
profile's trials is refused in one line, before any trial is asked."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hpo.core.errors import EndpointError
from launchers.runpod.backend import EndpointUnreachable, RunPodBackend, RunPodSettings
from launchers.runpod.client import AuthError
from launchers.runpod.job import JobPolicy
from tests.launchers import test_runpod_client
from tests.launchers.test_runpod_client import Answer, FakeRunPod, ok

fake = test_runpod_client.fake  # the scripted endpoint, a fixture

CATALOG = {"gpus": [{"id": "NVIDIA GeForce RTX 4090", "pool": "ADA_24", "price": {"serverless": 0.75}}]}


def endpoint(count: int = 1, most: int = 2) -> dict[str, Any]:
    return {
        "id": "ep",
        "name": "hpo-test",
        "gpu": {"pools": ["ADA_24"], "count": count},
        "workers": {"max": most},
    }


def serve(fake: FakeRunPod, settings: dict[str, Any], rest_code: int = 200) -> None:
    def route(method: str, path: str, body: Any) -> Answer:
        if path == "/v2/ep/health":
            return ok({"jobs": {}, "workers": {}})
        if rest_code != 200:
            return rest_code, {"error": "refused"}, {}
        if path == "/rest/v2/serverless/ep":
            return ok(settings)
        if path == "/rest/v2/catalog/gpus":
            return ok(CATALOG)
        if path == "/rest/v2/serverless/ep/workers":
            return ok({"workers": [], "summary": {}})
        return 404, {"error": "no route"}, {}

    fake.route = route


def backend(fake: FakeRunPod, rest_base: str | None = None, **changes: Any) -> RunPodBackend:
    settings = RunPodSettings("ep", "key", fake.api_base, rest_base or fake.rest_base)
    policy = JobPolicy(poll_interval_s=0.05, max_retries=2, timeout_s=60.0, **changes)
    started = RunPodBackend(settings, policy, records=None, workers=2, gpus_per_worker=1)  # type: ignore[arg-type]
    started.close()
    return started


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (endpoint(count=2), r"gives each worker 2 GPU\(s\) but the hardware profile asks for 1: run "),
        (endpoint(most=0), "allows 0 workers .*raise it in the console or re-run deploy"),
    ],
)
def test_an_endpoint_that_cannot_run_the_profiles_trials_is_refused(
    fake: FakeRunPod, settings: dict[str, Any], message: str
) -> None:
    serve(fake, settings)
    with pytest.raises(EndpointError, match=message) as caught:
        backend(fake)
    assert "\n" not in str(caught.value)


def test_fewer_workers_allowed_than_asked_is_a_warning_and_the_catalog_prices_them(
    fake: FakeRunPod, caplog: pytest.LogCaptureFixture
) -> None:
    serve(fake, endpoint(most=1))
    caplog.set_level(logging.WARNING, "launchers.runpod.backend")
    started = backend(fake)
    assert any("allows 1 workers but launcher.workers=2" in r.message for r in caplog.records)
    assert started.meter.price_for(None) == 0.75
    assert started.cost_report() == pytest.approx(
        {
            "cost_usd": 0,
            "cost_execution_usd": 0,
            "cost_cold_start_usd": 0,
            "cost_idle_usd": 0,
            "worker_seconds": 0,
            "price_per_hour": 0.75,
        }
    )
    assert backend(fake, price_per_hour=0.1).meter.price_for(None) == 0.1


def test_a_refused_key_on_the_rest_api_is_an_auth_error(fake: FakeRunPod) -> None:
    serve(fake, endpoint(), rest_code=401)
    with pytest.raises(AuthError):
        backend(fake)


def test_an_unreachable_rest_api_is_an_unreachable_endpoint(fake: FakeRunPod) -> None:
    serve(fake, endpoint())
    with pytest.raises(EndpointUnreachable, match="unreachable"):
        backend(fake, rest_base="http://127.0.0.1:9/rest")
