"""hpo's handlers under the runpod SDK's event loop: the trial runs in a thread, one at a time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from worker.serverless import in_thread


def test_the_event_loop_keeps_running_while_a_trial_runs() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    def trial(job: dict[str, Any]) -> dict[str, Any]:
        seen["thread"] = threading.current_thread()
        release.wait(5)
        return {"objective": job["input"]["x"] * 2}

    async def main() -> tuple[dict[str, Any], int]:
        task = asyncio.ensure_future(in_thread(trial)({"id": "j", "input": {"x": 21}}))
        ticks = 0
        while ticks < 5:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done()
        release.set()
        return await task, ticks

    output, ticks = asyncio.run(main())
    assert output == {"objective": 42}
    assert ticks == 5
    assert seen["thread"] is not threading.main_thread()


def test_a_cancelled_job_ends_only_once_its_trial_has_ended() -> None:
    started, release = threading.Event(), threading.Event()
    events: list[str] = []

    def trial(job: dict[str, Any]) -> dict[str, Any]:
        started.set()
        release.wait(5)
        events.append("trial ended")
        return {}

    async def main() -> None:
        task = asyncio.ensure_future(in_thread(trial)({"id": "j", "input": {}}))
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
