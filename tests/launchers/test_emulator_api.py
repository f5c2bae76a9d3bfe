"""The emulator's unkind API: Retry-After on 429s, rate limits, brownouts, lost answers, the RUNNING state,
and the REST API v2 (endpoints, templates, workers, GPU catalog) with its strict bodies."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from launchers.runpod.emulator import EmulatorProcess

pytestmark = pytest.mark.timeout(120)

TOY_WORKER = [sys.executable, str(Path(__file__).with_name("toy_worker.py"))]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One worker; the rate limits are scaled to 5% of RunPod's over a 2 s window so tests can trip them."""
    emu = EmulatorProcess(
        workers=1, worker_command=TOY_WORKER, log_dir=tmp_path_factory.mktemp("emulator"),
        rate_limit_window_s=2.0, rate_limit_scale=0.05,
    )  # fmt: skip
    with emu:
        yield emu
    assert emu.leftover_pids == []


@pytest.fixture
def http(emulator: EmulatorProcess) -> Iterator[requests.Session]:
    emulator.set_faults(error_rate=0, brownout_s=0, lost_answers=0, running_state=False, hang_s=12)
    time.sleep(2.0)  # a fresh rate-limit window
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {emulator.api_key}"
    yield session
    emulator.set_faults(error_rate=0, brownout_s=0, lost_answers=0, running_state=False, hang_s=12)


def test_injected_429_carries_retry_after(emulator: EmulatorProcess, http: requests.Session) -> None:
    emulator.set_faults(error_rate=1.0, seed=3)
    replies = [http.get(f"{emulator.url}/status/no-such-job", timeout=5) for _ in range(10)]
    throttled = [r for r in replies if r.status_code == 429]
    assert throttled and all(r.status_code in (429, 503) for r in replies)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in throttled)


def test_rate_limit_trips_with_retry_after_and_recovers(
    emulator: EmulatorProcess, http: requests.Session
) -> None:
    before = emulator.stats()["injected"]["rate_limited"]
    codes = [http.get(f"{emulator.url}/health", timeout=5).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]  # /health: 100 per 10 s, scaled to 5 per window
    refused = http.get(f"{emulator.url}/health", timeout=5)
    retry_after = int(refused.headers["Retry-After"])
    assert refused.status_code == 429 and 1 <= retry_after <= 2 and "rate limit" in refused.json()["error"]
    assert emulator.stats()["injected"]["rate_limited"] == before + 2
    assert http.get(f"{emulator.url}/purge-queue", timeout=5).status_code == 405  # a POST route
    time.sleep(retry_after)
    assert http.get(f"{emulator.url}/health", timeout=5).status_code == 200


def test_brownout_answers_503_or_hangs_then_recovers(
    emulator: EmulatorProcess, http: requests.Session
) -> None:
    injected = emulator.stats()["injected"]
    emulator.set_faults(brownout_s=1.5, hang_s=0.3)
    urls = [f"{emulator.url}/health"] * 3 + [f"{emulator.rest_api_base}/v2/serverless"]  # REST too
    outcomes = []
    for url in urls:
        try:
            outcomes.append(str(http.get(url, timeout=5).status_code))
        except requests.ConnectionError:
            outcomes.append("dropped")
    assert sorted(outcomes) == ["503", "503", "dropped", "dropped"]
    time.sleep(1.5)
    assert http.get(f"{emulator.url}/health", timeout=5).status_code == 200
    after = emulator.stats()["injected"]
    assert after["brownout_503"] - injected["brownout_503"] >= 2
    assert after["brownout_hangs"] - injected["brownout_hangs"] >= 2


def test_lost_answer_creates_the_job_but_the_client_times_out(
    emulator: EmulatorProcess, http: requests.Session
) -> None:
    before = emulator.stats()["jobs_total"]["COMPLETED"]
    emulator.set_faults(lost_answers=1, hang_s=3)
    with pytest.raises(requests.Timeout):
        http.post(f"{emulator.url}/run", json={"input": {"numbers": [1]}}, timeout=0.5)
    deadline = time.monotonic() + 20
    while emulator.stats()["jobs_total"]["COMPLETED"] == before:
        assert time.monotonic() < deadline, "the job whose answer was lost never ran"
        time.sleep(0.05)
    assert emulator.stats()["injected"]["lost_answers"] >= 1
    reply = http.post(f"{emulator.url}/run", json={"input": {"numbers": [2]}}, timeout=5)
    assert reply.status_code == 200 and reply.json()["status"] == "IN_QUEUE"


def test_running_state_shows_jobs_in_progress_as_running(
    emulator: EmulatorProcess, http: requests.Session, tmp_path: Path
) -> None:
    emulator.set_faults(running_state=True)
    gate = tmp_path / "gate"
    job = http.post(f"{emulator.url}/run", json={"input": {"wait_for": str(gate)}}, timeout=5).json()["id"]
    deadline = time.monotonic() + 20
    while (status := http.get(f"{emulator.url}/status/{job}", timeout=5).json())["status"] == "IN_QUEUE":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["status"] == "RUNNING"
    gate.touch()
    while status["status"] == "RUNNING":
        status = http.get(f"{emulator.url}/status/{job}", timeout=5).json()
        time.sleep(0.05)
    assert status["status"] == "COMPLETED"


def test_rest_endpoints_templates_workers_and_catalog(tmp_path: Path) -> None:
    with EmulatorProcess(workers=1, worker_command=TOY_WORKER, log_dir=tmp_path) as emulator:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {emulator.api_key}"
        rest = f"{emulator.rest_api_base}/v2"
        (live,) = http.get(f"{rest}/serverless", timeout=5).json()
        assert live["id"] == "local" and live["name"] == "hpo-emulator" and live["type"] == "QUEUE"
        assert live["gpu"] == {"pools": ["ADA_24"], "count": 1, "minCudaVersion": "12.5"}
        assert live["workers"] == {"min": 1, "max": 1, "idleTimeout": 5}
        assert (
            live["scaling"] == {"type": "REQUEST_COUNT", "requestCount": 1}
            and live["flashboot"] == "FLASHBOOT"
        )
        assert {"templateId", "image", "env", "disk", "networkVolumes", "timeout", "createdAt"} <= set(live)

        template = http.post(
            f"{rest}/templates",
            json={"name": "t", "image": "repo/img:1", "serverless": True, "env": {"A": "1"}, "disk": 30,
                  "category": "NVIDIA"},
            timeout=5,
        ).json()  # fmt: skip
        assert template["id"] and template["image"] == "repo/img:1"
        assert http.get(f"{rest}/templates", timeout=5).json() == [template]
        created = http.post(
            f"{rest}/serverless",
            json={"name": "sweep", "templateId": template["id"], "gpu": {"pools": ["AMPERE_80"], "count": 2},
                  "workers": {"min": 0, "max": 3, "idleTimeout": 7}, "flashboot": "OFF"},
            timeout=5,
        ).json()  # fmt: skip
        assert created["id"] != "local" and created["image"] == "repo/img:1" and created["env"] == {"A": "1"}
        assert created["gpu"] == {"pools": ["AMPERE_80"], "count": 2, "minCudaVersion": "12.5"}
        assert created["workers"] == {"min": 0, "max": 3, "idleTimeout": 7} and created["disk"] == 30
        assert http.get(f"{rest}/serverless/{created['id']}", timeout=5).json() == created
        assert http.get(f"{emulator.api_base}/{created['id']}/health", timeout=5).status_code == 404

        patched = http.patch(
            f"{rest}/templates/{template['id']}", json={"image": "repo/img:2"}, timeout=5
        ).json()
        assert patched["image"] == "repo/img:2"
        assert http.get(f"{rest}/serverless/{created['id']}", timeout=5).json()["image"] == "repo/img:2"
        patched = http.patch(
            f"{rest}/serverless/{created['id']}", json={"workers": {"max": 5}}, timeout=5
        ).json()
        assert patched["workers"] == {"min": 0, "max": 5, "idleTimeout": 7}
        assert len(http.get(f"{rest}/serverless", timeout=5).json()) == 2

        live_patch = http.patch(f"{rest}/serverless/local", json={"workers": {"idleTimeout": 9}}, timeout=5)
        assert live_patch.json()["workers"]["idleTimeout"] == 9
        assert emulator.stats()["endpoint"]["workers"]["idleTimeout"] == 9
        http.patch(f"{rest}/serverless/local", json={"workers": {"idleTimeout": 5}}, timeout=5)

        unknown = http.post(
            f"{rest}/serverless", json={"name": "x", "gpuIds": "ADA_24", "bogus": 1}, timeout=5
        )
        assert (
            unknown.status_code == 400
            and "bogus" in unknown.json()["error"]
            and "gpuIds" in unknown.json()["error"]
        )
        nested = http.patch(f"{rest}/serverless/local", json={"workers": {"maximum": 2}}, timeout=5)
        assert nested.status_code == 400 and "maximum" in nested.json()["error"]
        bad_pool = http.patch(f"{rest}/serverless/local", json={"gpu": {"pools": ["NO_SUCH"]}}, timeout=5)
        assert bad_pool.status_code == 400 and "pools" in bad_pool.json()["error"]
        assert (
            http.post(
                f"{rest}/templates", json={"name": "t", "image": "i", "ports": "80"}, timeout=5
            ).status_code
            == 400
        )
        assert http.get(f"{rest}/serverless/nope", timeout=5).status_code == 404
        assert requests.get(f"{rest}/serverless", timeout=5).status_code == 401

        emulator.wait_workers("idle")
        workers = http.get(f"{rest}/serverless/local/workers", timeout=5).json()
        (worker,) = workers["workers"]
        assert worker["status"] == "IDLE" and worker["gpuCount"] == 1
        assert worker["gpuTypeId"] == "NVIDIA GeForce RTX 4090" and worker["startedAt"].endswith("Z")
        assert isinstance(worker["uptimeSeconds"], int)
        summary = {"idle": 1, "initializing": 0, "running": 0, "throttled": 0, "unhealthy": 0, "total": 1}
        assert workers["summary"] == summary
        assert http.get(f"{rest}/serverless/{created['id']}/workers", timeout=5).json()["workers"] == []

        gpus = http.get(f"{rest}/catalog/gpus", params={"product": "SERVERLESS"}, timeout=5).json()["gpus"]
        pools = {gpu["pool"]: gpu for gpu in gpus}
        assert {"ADA_24", "AMPERE_24", "AMPERE_48", "ADA_48_PRO", "AMPERE_80", "HOPPER_141"} <= set(pools)
        ada = pools["ADA_24"]
        assert (
            ada["id"] == "NVIDIA GeForce RTX 4090" and ada["memory"] == 24 and ada["manufacturer"] == "NVIDIA"
        )
        assert ada["price"]["serverless"] == pytest.approx(0.00031 * 3600)
        assert {"secure", "community"} <= set(ada["price"]) and ada["secure"] and "maxCount" in ada
