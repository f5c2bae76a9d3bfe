"""hpo's handlers under the runpod SDK's event loop: the trial runs in a thread, one at a time, the next
job waits its turn on the worker, and a cancelled job stops its trial."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from hpo.core.payload import WORKER_WAIT_KEY
from worker.serverless import one_at_a_time
from worker.stopping import StopRequest


def test_the_event_loop_keeps_running_while_a_trial_runs() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    def trial(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
        seen["thread"] = threading.current_thread()
        release.wait(5)
        return {"objective": job["input"]["x"] * 2}

    async def main() -> tuple[dict[str, Any], int]:
        task = asyncio.ensure_future(one_at_a_time(trial)({"id": "j", "input": {"x": 21}}))
        ticks = 0
        while ticks < 5:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done()
        release.set()
        return await task, ticks

    output, ticks = asyncio.run(main())
    assert output["objective"] == 42
    assert output[WORKER_WAIT_KEY] < 0.05
    assert ticks == 5
    assert seen["thread"] is not threading.main_thread()


def test_a_held_job_starts_when_the_trial_before_it_ends_and_reports_its_wait() -> None:
    release = threading.Event()
    events: list[str] = []

    def trial(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
        events.append(f"{job['id']} started")
        if job["id"] == "first":
            release.wait(5)
        events.append(f"{job['id']} ended")
        return {}

    async def main() -> list[dict[str, Any]]:
        handle = one_at_a_time(trial)
        first = asyncio.ensure_future(handle({"id": "first", "input": {}}))
        second = asyncio.ensure_future(handle({"id": "second", "input": {}}))
        await asyncio.sleep(0.2)
        assert events == ["first started"], "the held job must wait for the trial before it"
        release.set()
        return [await first, await second]

    first, second = asyncio.run(main())
    assert events == ["first started", "first ended", "second started", "second ended"]
    assert second[WORKER_WAIT_KEY] >= 0.2 > first[WORKER_WAIT_KEY]


def test_a_held_job_cancelled_while_it_waits_leaves_without_running() -> None:
    release = threading.Event()
    started: list[str] = []

    def trial(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
        started.append(job["id"])
        release.wait(5)
        return {}

    async def main() -> None:
        handle = one_at_a_time(trial)
        first = asyncio.ensure_future(handle({"id": "first", "input": {}}))
        held = asyncio.ensure_future(handle({"id": "held", "input": {}}))
        await asyncio.sleep(0.05)
        held.cancel()
        await asyncio.sleep(0.05)
        assert held.cancelled(), "a job waiting for its turn must leave at once when cancelled"
        release.set()
        await first

    asyncio.run(main())
    assert started == ["first"]


def test_a_cancelled_job_stops_its_trial_and_returns_promptly() -> None:
    started = threading.Event()
    events: list[str] = []

    def trial(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
        started.set()
        assert stop.wait(10), "the cancel must set the job's stop request"
        events.append(f"trial stopped: {stop.why}")
        raise stop.stopped(0)

    async def main() -> float:
        task = asyncio.ensure_future(one_at_a_time(trial)({"id": "j", "input": {}}))
        while not started.is_set():
            await asyncio.sleep(0.01)
        cancelled = time.monotonic()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            events.append("job cancelled")
        return time.monotonic() - cancelled

    took = asyncio.run(main())
    assert events == ["trial stopped: stopped by RunPod: job cancelled or timed out", "job cancelled"]
    assert took < 1.0


def test_a_stopped_job_holds_the_worker_until_its_trial_ends_however_often_it_is_cancelled() -> None:
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def trial(job: dict[str, Any], stop: StopRequest) -> dict[str, Any]:
        events.append(f"{job['id']} started")
        if job["id"] == "first":
            started.set()
            release.wait(5)  # a batch that takes a while to end
        events.append(f"{job['id']} ended")
        return {}

    async def main() -> None:
        handle = one_at_a_time(trial)
        first = asyncio.ensure_future(handle({"id": "first", "input": {}}))
        second = asyncio.ensure_future(handle({"id": "second", "input": {}}))
        while not started.is_set():
            await asyncio.sleep(0.01)
        for _ in range(3):
            first.cancel()
            await asyncio.sleep(0.05)
        assert not first.done(), "the job must hold the worker until its trial ends"
        assert events == ["first started"], "no second trial while the stopped one runs"
        release.set()
        try:
            await first
        except asyncio.CancelledError:
            events.append("first cancelled")
        await second

    asyncio.run(main())
    assert events == ["first started", "first ended", "first cancelled", "second started", "second ended"]
