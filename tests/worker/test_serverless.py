"""hpo's handlers under the runpod SDK's event loop: the trial runs in a thread, one at a time, and the
next job waits its turn on the worker."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from hpo.core.payload import WORKER_WAIT_KEY
from worker.serverless import one_at_a_time


def test_the_event_loop_keeps_running_while_a_trial_runs() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    def trial(job: dict[str, Any]) -> dict[str, Any]:
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

    def trial(job: dict[str, Any]) -> dict[str, Any]:
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

    def trial(job: dict[str, Any]) -> dict[str, Any]:
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


def test_a_cancelled_job_ends_only_once_its_trial_has_ended() -> None:
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def trial(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        release.wait(5)
        events.append("trial ended")
        return {}

    async def main() -> None:
        task = asyncio.ensure_future(one_at_a_time(trial)({"id": "j", "input": {}}))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "the job must hold the worker until its trial ends"
        release.set()
        try:
            await task
        except asyncio.CancelledError:
            events.append("job cancelled")

    asyncio.run(main())
    assert events == ["trial ended", "job cancelled"]
