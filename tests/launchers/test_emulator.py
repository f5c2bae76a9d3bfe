"""The RunPod emulator, driven by the real runpod SDK on both sides: the client against its /v2 API, and
real ``runpod.serverless.start`` workers (``toy_worker.py``) against its webhooks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import runpod

from launchers.runpod.emulator import EmulatorProcess
from launchers.runpod.emulator.process import EmulatorError

pytestmark = pytest.mark.timeout(120)

TOY_WORKER = [sys.executable, str(Path(__file__).with_name("toy_worker.py"))]
WORKERS = 2
MB = 1_000_000
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


def pgids(emulator: EmulatorProcess) -> dict[int, int]:
    """Process group of every live process the emulator started (found by its token, not by pid)."""
    groups = {}
    for proc in emulator.processes():
        try:
            groups[proc.pid] = os.getpgid(proc.pid)
        except ProcessLookupError:
            continue
    return groups


def orphans(emulator: EmulatorProcess) -> list[int]:
    """Processes the emulator started that are in neither its own process group nor a current worker's."""
    owners = {emulator.pid, *emulator.stats()["worker_pids"]}
    return sorted(pid for pid, pgid in pgids(emulator).items() if pgid not in owners)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess(
        workers=WORKERS, worker_command=TOY_WORKER, log_dir=tmp_path_factory.mktemp("emulator")
    )
    with emu:
        yield emu
    assert emu.leftover_pids == [], f"processes outlived the emulator: {emu.leftover_pids}"
    assert emu.processes() == []


@pytest.fixture
def endpoint(emulator: EmulatorProcess) -> Iterator[runpod.Endpoint]:
    """A runpod SDK endpoint on the shared emulator, with no faults and no job left running.

    Replacement workers may still be starting: jobs queue until one polls, and tests that need every
    worker wait for them (``occupy_workers``). Afterwards, no process the emulator started is orphaned.
    """
    emulator.set_faults(error_rate=0, kill_worker_jobs=0, timeout_jobs=0, status_delay_s=0)
    emulator.wait_workers("idle", "initializing")
    runpod.api_key = emulator.api_key
    runpod.endpoint_url_base = emulator.api_base
    yield runpod.Endpoint(emulator.endpoint_id)
    emulator.set_faults(error_rate=0, kill_worker_jobs=0, timeout_jobs=0, status_delay_s=0)
    wait_until(lambda: orphans(emulator) == [], timeout_s=10, what="no orphaned worker processes")


def status_of(job: runpod.endpoint.Job) -> dict[str, Any]:
    return dict(job.rp_client.get(f"{job.endpoint_id}/status/{job.job_id}"))


def wait_status(job: runpod.endpoint.Job, *states: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll the job's status JSON until it is in one of ``states`` (any final state by default)."""
    states = states or FINAL
    deadline = time.monotonic() + timeout_s
    while (status := status_of(job))["status"] not in states:
        assert time.monotonic() < deadline, f"job stuck at {status} while waiting for {states}"
        time.sleep(0.02)
    return status


def wait_until(predicate: Any, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def through_faults(call: Callable[[], requests.Response]) -> requests.Response:
    """Repeat a raw API call for as long as it is refused with an injected 429 or 503."""
    while (reply := call()).status_code in (429, 503):
        continue
    reply.raise_for_status()
    return reply


def worker_pid(emulator: EmulatorProcess, job_id: str) -> int:
    return next(w["pid"] for w in emulator.stats()["workers"].values() if job_id in w["job_ids"])


def assert_replaced(emulator: EmulatorProcess, pid: int) -> None:
    """The worker ``pid`` is gone with its whole process group, and a fresh worker is taking its place."""
    wait_until(lambda: pid in emulator.stats()["retired_worker_pids"], what=f"worker {pid} to be retired")
    wait_until(lambda: pid not in pgids(emulator).values(), timeout_s=10, what=f"worker {pid}'s group to end")
    stats = emulator.wait_workers("idle", "running", "initializing")
    assert pid not in stats["worker_pids"] and set(stats["worker_pids"]) <= set(pgids(emulator))


def occupy_workers(
    emulator: EmulatorProcess, endpoint: runpod.Endpoint, gate: Path
) -> list[runpod.endpoint.Job]:
    """One job per worker that blocks until ``gate`` exists."""
    emulator.wait_workers("idle")
    blockers = [endpoint.run({"wait_for": str(gate)}) for _ in range(WORKERS)]
    for job in blockers:
        wait_status(job, "IN_PROGRESS")
    return blockers


def test_run_reports_output_worker_and_times(endpoint: runpod.Endpoint, emulator: EmulatorProcess) -> None:
    env = [
        "RUNPOD_API_KEY",
        "RUNPOD_AI_API_KEY",
        "RUNPOD_ENDPOINT_ID",
        "RUNPOD_POD_ID",
        "RUNPOD_WEBHOOK_GET_JOB",
    ]
    job = endpoint.run({"numbers": [1, 2, 3.5], "env": env})
    status = wait_status(job)
    assert status["status"] == "COMPLETED" and status["id"] == job.job_id
    assert status["output"]["sum"] == 6.5
    assert status["workerId"] == status["output"]["worker_id"]
    assert status["workerId"] in emulator.stats()["workers"]
    assert status["output"]["pid"] in emulator.worker_pids()
    assert status["output"]["env"] == {
        "RUNPOD_API_KEY": None,  # workers get the key as RUNPOD_AI_API_KEY only, as on RunPod
        "RUNPOD_AI_API_KEY": emulator.api_key,
        "RUNPOD_ENDPOINT_ID": "local",
        "RUNPOD_POD_ID": status["workerId"],
        "RUNPOD_WEBHOOK_GET_JOB": f"{emulator.url}/job-take/$ID?gpu=emulator",
    }
    assert isinstance(status["delayTime"], int) and isinstance(status["executionTime"], int)
    assert job.status() == "COMPLETED" and job.output(timeout=5) == status["output"]


def test_delay_time_is_queue_wait_and_execution_time_is_run_time(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    blockers = occupy_workers(emulator, endpoint, gate)
    queued = endpoint.run({"numbers": [1]})
    assert status_of(queued) == {"id": queued.job_id, "status": "IN_QUEUE"}
    time.sleep(0.4)
    gate.touch()
    assert all(wait_status(job)["executionTime"] >= 400 for job in blockers)
    status = wait_status(queued)
    assert status["status"] == "COMPLETED" and status["delayTime"] >= 400
    assert status["executionTime"] < status["delayTime"]


def test_runsync_returns_output_or_status_when_not_done(endpoint: runpod.Endpoint, tmp_path: Path) -> None:
    assert endpoint.run_sync({"numbers": [4, 5]}, timeout=30)["sum"] == 9
    gate = tmp_path / "gate"
    reply = endpoint.rp_client.post(
        f"{endpoint.endpoint_id}/runsync?wait=1000", {"input": {"wait_for": str(gate)}}
    )
    assert reply["status"] in ("IN_QUEUE", "IN_PROGRESS") and reply["id"].startswith("sync-")
    gate.touch()
    job = runpod.endpoint.Job(endpoint.endpoint_id, reply["id"], endpoint.rp_client)
    assert wait_status(job)["status"] == "COMPLETED"


def test_progress_updates_show_as_output_while_in_progress(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    before = emulator.stats()["progress_updates"]
    gate = tmp_path / "gate"
    job = endpoint.run({"progress": 3, "wait_for": str(gate), "numbers": [2]})
    wait_until(lambda: emulator.stats()["progress_updates"] == before + 3, what="3 progress updates")
    status = status_of(job)
    assert status["status"] == "IN_PROGRESS" and status["output"] in ("step 1/3", "step 2/3", "step 3/3")
    assert "workerId" in status and status["executionTime"] >= 0
    gate.touch()
    assert wait_status(job)["output"]["sum"] == 2


def test_handler_exception_and_returned_error_fail_the_job(endpoint: runpod.Endpoint) -> None:
    raised = wait_status(endpoint.run({"raise": "boom 42"}))
    assert raised["status"] == "FAILED" and "output" not in raised
    error = json.loads(raised["error"])
    assert error["error_message"] == "boom 42" and "ValueError" in error["error_type"]
    returned = wait_status(endpoint.run({"error": "bad input"}))
    assert returned["status"] == "FAILED" and returned["error"] == "bad input"


def test_cancel_queued_and_in_progress_jobs(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    restarts = emulator.stats()["worker_restarts"]
    gate = tmp_path / "gate"
    running, other = occupy_workers(emulator, endpoint, gate)
    queued = endpoint.run({"numbers": [1]})
    assert queued.cancel() == {"id": queued.job_id, "status": "CANCELLED"}
    pid = worker_pid(emulator, running.job_id)
    assert running.cancel() == {"id": running.job_id, "status": "CANCELLED"}
    # the worker is told to stop the job and keeps running: it takes the next job
    wait_until(lambda: emulator.stats()["stops"][running.job_id]["release_s"] is not None, what="release")
    assert pid in emulator.worker_pids()
    assert wait_status(endpoint.run({"numbers": [2]}))["output"]["pid"] == pid
    gate.touch()
    assert wait_status(other)["status"] == "COMPLETED"
    cancelled = status_of(queued)
    assert cancelled["status"] == "CANCELLED" and "workerId" not in cancelled and "output" not in cancelled
    assert status_of(running)["status"] == "CANCELLED"
    health = endpoint.health()
    assert health["jobs"]["inQueue"] == 0 and health["jobs"]["inProgress"] == 0
    assert emulator.stats()["worker_restarts"] == restarts


def test_wrong_or_missing_key_is_unauthorized(endpoint: runpod.Endpoint, emulator: EmulatorProcess) -> None:
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        runpod.Endpoint(emulator.endpoint_id, api_key="wrong").health()
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        runpod.Endpoint(emulator.endpoint_id, api_key="wrong").run({"numbers": [1]})
    assert requests.post(f"{emulator.url}/run", json={"input": {}}, timeout=5).status_code == 401
    take = requests.get(
        f"{emulator.url}/job-take/w0?job_in_progress=0", headers={"Authorization": "x"}, timeout=5
    )
    assert take.status_code == 401
    assert requests.get(f"{emulator.api_base[:-3]}/_emulator/stats", timeout=5).status_code == 401
    assert endpoint.health()["jobs"]["inQueue"] == 0


def test_unknown_endpoint_and_job_are_404(endpoint: runpod.Endpoint) -> None:
    with pytest.raises(requests.HTTPError) as error:
        runpod.Endpoint("no-such-endpoint").health()
    assert error.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as error:
        endpoint.rp_client.get(f"{endpoint.endpoint_id}/status/no-such-job")
    assert error.value.response.status_code == 404


def test_purge_queue_cancels_waiting_jobs_only(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    blockers = occupy_workers(emulator, endpoint, gate)
    queued = [endpoint.run({"numbers": [n]}) for n in range(3)]
    assert endpoint.purge_queue() == {"removed": 3, "status": "completed"}
    assert [status_of(job)["status"] for job in queued] == ["CANCELLED"] * 3
    assert endpoint.health()["jobs"]["inQueue"] == 0
    gate.touch()
    assert [wait_status(job)["status"] for job in blockers] == ["COMPLETED"] * WORKERS


def test_retry_requeues_a_failed_job_under_its_id(endpoint: runpod.Endpoint, tmp_path: Path) -> None:
    retried = endpoint.health()["jobs"]["retried"]
    flag = tmp_path / "flag"
    job = endpoint.run({"fail_unless": str(flag), "numbers": [7]})
    assert wait_status(job)["status"] == "FAILED"
    flag.touch()
    assert endpoint.rp_client.post(f"{endpoint.endpoint_id}/retry/{job.job_id}", None) == {
        "id": job.job_id,
        "status": "IN_QUEUE",
    }
    status = wait_status(job)
    assert status["status"] == "COMPLETED" and status["output"]["sum"] == 7 and status["retries"] == 1
    assert endpoint.health()["jobs"]["retried"] == retried + 1
    with pytest.raises(requests.HTTPError) as error:
        endpoint.rp_client.post(f"{endpoint.endpoint_id}/retry/{job.job_id}", None)
    assert error.value.response.status_code == 400


def test_error_rate_fault_refuses_some_api_requests(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess
) -> None:
    before = emulator.stats()["injected_errors"]
    job = {"input": {"numbers": [3]}}
    emulator.set_faults(error_rate=0.5, seed=7)
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    codes = [
        requests.get(f"{emulator.url}/health", headers=headers, timeout=5).status_code for _ in range(40)
    ]
    assert set(codes) <= {200, 429, 503}
    assert codes.count(429) > 0 and codes.count(503) > 0 and codes.count(200) > 0
    stats = emulator.stats()
    assert stats["injected_errors"] - before == 40 - codes.count(200)
    assert stats["injected"]["429"] >= codes.count(429) and stats["injected"]["503"] >= codes.count(503)
    submitted = through_faults(lambda: requests.post(f"{emulator.url}/run", json=job, headers=headers))
    status_url = f"{emulator.url}/status/{submitted.json()['id']}"
    wait_until(
        lambda: through_faults(lambda: requests.get(status_url, headers=headers)).json()["status"] in FINAL
    )
    # the job ran although half the API calls were refused: the worker's webhooks never are
    assert through_faults(lambda: requests.get(status_url, headers=headers)).json()["output"]["sum"] == 3


def test_kill_worker_fault_fails_the_job_as_worker_lost(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    emulator.set_faults(kill_worker_jobs=1, kill_after_s=60)
    job = endpoint.run({"progress": 1, "wait_for": str(tmp_path / "never")})
    status = wait_status(job)
    assert status["status"] == "FAILED" and status["error"].startswith("worker lost:")
    assert "SIGKILL" in status["error"] and status["workerId"] in status["error"]
    # the worker is killed as soon as it reports progress: its pid is known from the error, not beforehand
    pid = re.search(r"\(pid (\d+)\)", status["error"])
    assert pid, status["error"]
    assert_replaced(emulator, int(pid.group(1)))
    assert wait_status(endpoint.run({"numbers": [1, 1]}))["output"]["sum"] == 2


def test_worker_that_exits_mid_job_fails_it_and_is_replaced(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess
) -> None:
    job = endpoint.run({"exit": 3})
    status = wait_status(job)
    assert status["status"] == "FAILED" and status["error"].startswith("worker lost:")
    assert "exited with code 3" in status["error"]
    assert status["workerId"] not in emulator.stats()["workers"]


def test_refresh_worker_completes_the_job_then_replaces_the_worker(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess
) -> None:
    restarts = emulator.stats()["worker_restarts"]
    status = wait_status(endpoint.run({"numbers": [6], "refresh": True}))
    assert status["status"] == "COMPLETED" and status["output"] == {
        "worker_id": status["workerId"],
        "pid": status["output"]["pid"],
        "sum": 6,
    }
    assert_replaced(emulator, status["output"]["pid"])
    assert emulator.stats()["worker_restarts"] == restarts + 1


def test_timeout_fault_times_the_job_out_and_stops_it_on_its_worker(
    endpoint: runpod.Endpoint, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    emulator.set_faults(timeout_jobs=1, timeout_after_s=0.3)
    job = endpoint.run({"wait_for": str(tmp_path / "never")})
    wait_status(job, "IN_PROGRESS")
    pid = worker_pid(emulator, job.job_id)
    status = wait_status(job)
    assert (
        status["status"] == "TIMED_OUT" and status["executionTime"] >= 300 and "timed out" in status["error"]
    )
    assert job.status() == "TIMED_OUT"
    wait_until(lambda: emulator.stats()["stops"][job.job_id]["release_s"] is not None, what="release")
    assert pid in emulator.worker_pids()
    health = endpoint.health()
    assert health["jobs"]["inProgress"] == 0 and health["jobs"]["inQueue"] == 0


def test_payload_limits_are_enforced(endpoint: runpod.Endpoint, emulator: EmulatorProcess) -> None:
    with pytest.raises(requests.HTTPError) as error:
        endpoint.run({"blob": "x" * (10 * MB)})
    assert error.value.response.status_code == 400
    assert "10 MB limit for /run" in error.value.response.json()["error"]
    with pytest.raises(requests.HTTPError) as error:
        endpoint.run_sync({"blob": "x" * (20 * MB)}, timeout=30)
    assert "20 MB limit for /runsync" in error.value.response.json()["error"]
    with pytest.raises(requests.HTTPError) as error:
        endpoint.run({"input": {"numbers": [1]}, "policy": {"executionTimeout": 1000}})
    assert "executionTimeout" in error.value.response.json()["error"]
    too_big = wait_status(endpoint.run({"output_bytes": 10 * MB + 1}))
    assert too_big["status"] == "FAILED" and too_big["error"].startswith(
        "output exceeds RunPod's 10 MB limit"
    )
    assert len(endpoint.run_sync({"output_bytes": 10 * MB + 1}, timeout=60)["blob"]) == 10 * MB + 1


def test_cli_refuses_to_start_without_an_api_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RUNPOD_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "launchers.runpod.emulator", "--workers", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.startswith("error:") and "RUNPOD_API_KEY" in done.stderr and done.stderr.count("\n") == 1
    )


def test_a_worker_that_cannot_start_is_reported(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "print('no handler here'); raise SystemExit(3)"]
    with pytest.raises(EmulatorError, match="(?s)exited with code 3 before polling.*no handler here"):
        EmulatorProcess(workers=1, worker_command=crash, log_dir=tmp_path, startup_timeout_s=30).start()


def test_sigint_stops_every_worker(tmp_path: Path) -> None:
    with EmulatorProcess(workers=1, worker_command=TOY_WORKER, log_dir=tmp_path) as emu:
        runpod.api_key, runpod.endpoint_url_base = emu.api_key, emu.api_base
        assert runpod.Endpoint(emu.endpoint_id).run_sync({"numbers": [1, 2]}, timeout=30)["sum"] == 3
        assert emu.pid is not None
        (worker,) = emu.worker_pids()
        tree = {p.pid: (pgids(emu).get(p.pid), p.cmdline()) for p in emu.processes()}
        in_worker_group = [pid for pid, (pgid, _) in tree.items() if pgid == worker and pid != worker]
        assert emu.pid in tree and worker in tree and in_worker_group, f"no heartbeat process: {tree}"
        os.kill(emu.pid, signal.SIGINT)
        assert psutil.Process(emu.pid).wait(15) == 0
        wait_until(lambda: emu.processes() == [], timeout_s=5, what="every worker process to end")
    assert emu.leftover_pids == []
