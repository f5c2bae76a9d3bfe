"""The emulator's RunPod-like worker lifecycle: per-job stops, autoscaling, cold starts, billing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from launchers.runpod.emulator import EmulatorProcess
from launchers.runpod.emulator.jobs import Job
from launchers.runpod.emulator.scaler import wanted

pytestmark = pytest.mark.timeout(120)

TOY_WORKER = [sys.executable, str(Path(__file__).with_name("toy_worker.py"))]
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


class Client:
    """Plain HTTP against one emulator, as hpo's client talks to RunPod."""

    def __init__(self, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {emulator.api_key}"

    def run(self, job_input: dict[str, Any], **policy: Any) -> str:
        body: dict[str, Any] = {"input": job_input, **({"policy": policy} if policy else {})}
        reply = self.session.post(f"{self.emulator.url}/run", json=body, timeout=10)
        reply.raise_for_status()
        return str(reply.json()["id"])

    def status(self, job_id: str) -> dict[str, Any]:
        reply = self.session.get(f"{self.emulator.url}/status/{job_id}", timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    def wait(self, job_id: str, *states: str, timeout_s: float = 30.0) -> dict[str, Any]:
        states = states or FINAL
        wait_until(lambda: self.status(job_id)["status"] in states, timeout_s, f"{job_id} to be {states}")
        return self.status(job_id)

    def workers(self) -> dict[str, Any]:
        url = f"{self.emulator.rest_api_base}/v2/serverless/{self.emulator.endpoint_id}/workers"
        reply = self.session.get(url, timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    def patch(self, **body: Any) -> dict[str, Any]:
        url = f"{self.emulator.rest_api_base}/v2/serverless/{self.emulator.endpoint_id}"
        reply = self.session.patch(url, json=body, timeout=10)
        reply.raise_for_status()
        return dict(reply.json())


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_cancel_stops_the_job_on_its_worker_which_survives(tmp_path: Path) -> None:
    with EmulatorProcess(workers=1, worker_command=TOY_WORKER, log_dir=tmp_path / "logs") as emu:
        client = Client(emu)
        stopped = tmp_path / "stopped"
        job = client.run({"wait_for": str(tmp_path / "never"), "on_stop": str(stopped)})
        client.wait(job, "IN_PROGRESS")
        (pid,) = emu.worker_pids()
        reply = client.session.post(f"{emu.url}/cancel/{job}", timeout=10).json()
        assert reply == {"id": job, "status": "CANCELLED"}
        # the handler writes the file after creating it: wait for its text, not only for the file
        wait_until(lambda: stopped.is_file() and stopped.read_text() != "", 10, "the job stopped")
        assert stopped.read_text() == job
        wait_until(lambda: emu.stats()["stops"][job]["release_s"] is not None, 10, "the stop's release")
        stop = emu.stats()["stops"][job]
        # in this order; how fast is the emulator benchmark's business, not a test's on 2 shared cores
        assert stop["signalled"] <= stop["delivered"] <= stop["released"]
        assert client.wait(client.run({"numbers": [1, 2]}))["output"] == {"worker_id": stop["worker_id"],
                                                                           "pid": pid, "sum": 3}  # fmt: skip
        stats = emu.stats()
        assert stats["worker_pids"] == [pid] and stats["worker_restarts"] == 0
        assert client.status(job)["status"] == "CANCELLED"


def test_scales_from_zero_with_cold_starts_and_back_with_billing_of_uptimes(tmp_path: Path) -> None:
    emu = EmulatorProcess(
        workers=2, workers_min=0, idle_timeout_s=1, cold_start_s=0.5, rate_limit_scale=100,
        worker_command=TOY_WORKER, log_dir=tmp_path, gpu_pool="AMPERE_48", gpu_count=2,
    )  # fmt: skip
    with emu:
        client = Client(emu)
        assert client.workers()["workers"] == [] and emu.billing()["workers"] == []
        jobs = [client.run({"sleep_s": 0.5, "numbers": [n]}) for n in range(3)]
        seen: dict[str, list[float]] = {}
        states: set[str] = set()
        deadline = time.monotonic() + 60
        while not seen or client.workers()["workers"]:
            assert time.monotonic() < deadline, "the endpoint did not scale back to zero"
            for worker in client.workers()["workers"]:
                now = time.monotonic()
                seen.setdefault(worker["id"], [now, now])[1] = now
                states.add(worker["status"])
            time.sleep(0.01)
        assert [client.status(job)["status"] for job in jobs] == ["COMPLETED"] * 3
        assert len(seen) == 2 and {"INITIALIZING", "RUNNING"} <= states
        stats = emu.wait_idle(10)
        assert stats["workers"] == {}
        bill = stats["billing"]
        assert {row["id"] for row in bill["workers"]} == set(seen)
        for row in bill["workers"]:
            assert row["stopped_s"] is not None and row["cold_start_s"] == 0.5
            assert row["pool"] == "AMPERE_48" and row["gpu_count"] == 2
            assert row["seconds"] == pytest.approx(row["stopped_s"] - row["started_s"], abs=0.002)
            assert row["seconds"] >= 0.5 + 0.5 + 1.0  # cold start, a job, the idle timeout
            price = next(g for g in catalog(client) if g["pool"] == "AMPERE_48")["price"]["serverless"]
            assert row["usd"] == pytest.approx(row["seconds"] * price * 2 / 3600, rel=1e-3)
        uptimes = sum(last - first for first, last in seen.values())
        assert bill["worker_seconds"] == pytest.approx(uptimes, abs=0.2)
        assert emu.billing()["worker_seconds"] == bill["worker_seconds"]  # nothing is billed any more


def catalog(client: Client) -> list[dict[str, Any]]:
    reply = client.session.get(f"{client.emulator.rest_api_base}/v2/catalog/gpus?product=SERVERLESS")
    return list(reply.json()["gpus"])


def test_max_zero_keeps_jobs_queued_until_raised(tmp_path: Path) -> None:
    with EmulatorProcess(workers=0, worker_command=TOY_WORKER, log_dir=tmp_path) as emu:
        client = Client(emu)
        job = client.run({"numbers": [4]})
        time.sleep(1.0)
        assert client.status(job) == {"id": job, "status": "IN_QUEUE"}
        assert emu.stats()["workers"] == {} and emu.billing()["worker_seconds"] == 0
        assert client.patch(workers={"max": 1})["workers"]["max"] == 1
        assert client.wait(job)["output"]["sum"] == 4


def test_low_priority_jobs_do_not_start_workers(tmp_path: Path) -> None:
    emu = EmulatorProcess(
        workers=3,
        workers_min=0,
        idle_timeout_s=2,
        worker_command=TOY_WORKER,
        log_dir=tmp_path,
        rate_limit_scale=100,
    )
    with emu:
        client = Client(emu)
        low = [client.run({"numbers": [n]}, lowPriority=True) for n in range(3)]
        time.sleep(1.0)
        assert [client.status(job)["status"] for job in low] == ["IN_QUEUE"] * 3
        assert client.workers()["workers"] == []
        normal = client.run({"numbers": [9]})
        most = 0
        for job in [normal, *low]:
            while client.status(job)["status"] not in FINAL:
                most = max(most, len(client.workers()["workers"]))
                time.sleep(0.02)
        assert [client.status(job)["status"] for job in [normal, *low]] == ["COMPLETED"] * 4
        assert most == 1 and len(emu.billing()["workers"]) == 1


def test_throttled_workers_wait_unbilled_until_released(tmp_path: Path) -> None:
    emu = EmulatorProcess(
        workers=1,
        workers_min=0,
        throttled_workers=1,
        worker_command=TOY_WORKER,
        log_dir=tmp_path,
        rate_limit_scale=100,
    )
    with emu:
        client = Client(emu)
        job = client.run({"numbers": [1]})
        wait_until(lambda: [w["status"] for w in client.workers()["workers"]] == ["THROTTLED"], 10)
        time.sleep(0.5)
        assert client.status(job)["status"] == "IN_QUEUE" and emu.billing()["workers"] == []
        assert client.workers()["summary"]["throttled"] == 1 and emu.health()["workers"]["throttled"] == 1
        assert emu.stats()["injected"]["throttled_workers"] == 1
        emu.set_faults(throttled_workers=0)
        assert client.wait(job)["status"] == "COMPLETED"
        assert len(emu.billing()["workers"]) == 1


def test_queue_delay_scaling_adds_one_worker_per_overdue_queue() -> None:
    now = time.monotonic()
    settings = {"scaling": {"type": "QUEUE_DELAY", "queueDelay": 2}}
    fresh = Job("a", {}, "run", 600, 3600, queued=now - 1)
    overdue = Job("b", {}, "run", 600, 3600, queued=now - 3)
    low = Job("c", {}, "run", 600, 3600, queued=now - 9, low_priority=True)
    assert wanted(settings, [fresh, low], running=2, now=now) == 2
    assert wanted(settings, [fresh, overdue], running=2, now=now) == 3
    counted = {"scaling": {"type": "REQUEST_COUNT", "requestCount": 2}}
    assert wanted(counted, [fresh, overdue, low], running=0, now=now) == 1
