"""How hpo's handlers run under the runpod SDK's serverless loop: in a thread, one trial at a time, with
the worker's next job already taken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hpo.core.collector import freeze_setup
from hpo.core.payload import JOBS_HELD_PER_WORKER, WORKER_WAIT_KEY

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def serve(handler: Handler) -> None:
    """Run this process as a RunPod serverless worker serving ``handler`` (the worker image's command)."""
    import runpod

    freeze_setup()
    runpod.serverless.start(
        {"handler": one_at_a_time(handler), "concurrency_modifier": lambda _: JOBS_HELD_PER_WORKER}
    )


def one_at_a_time(handler: Handler) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """``handler`` as an async handler that runs each job's trial in a thread, one trial at a time.

    The SDK looks for a job only once a second while it holds one, so a worker that held one job at a time
    idled between trials until the SDK's next look.
    Holding ``JOBS_HELD_PER_WORKER`` jobs, the worker has its next job while a trial trains: the job waits
    here for its turn and starts the moment the trial before it ends. The trials run in a thread so the
    SDK's loop stays free to take jobs and post results meanwhile. A job cancelled while it waits leaves at
    once; one cancelled while it trains holds the worker until its trial ends, so a worker never trains two
    trials at once. A dict output gains ``WORKER_WAIT_KEY``: how long the job waited for its turn.
    """
    turn = asyncio.Lock()

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        async with turn:
            waited = time.monotonic() - arrived
            trial = asyncio.ensure_future(asyncio.to_thread(handler, job))
            try:
                output = await asyncio.shield(trial)
            except asyncio.CancelledError:
                await trial
                raise
        return {**output, WORKER_WAIT_KEY: round(waited, 3)} if isinstance(output, dict) else output

    return handle
