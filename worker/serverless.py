"""How hpo's handlers run under the runpod SDK's serverless loop: in a thread, one trial at a time, with
the worker's next job already taken, and stopped within a batch when RunPod stops the job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hpo.core.collector import freeze_setup
from hpo.core.payload import JOBS_HELD_PER_WORKER, WORKER_WAIT_KEY
from worker.stopping import StopRequest

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], StopRequest], dict[str, Any]]
"""A sync handler: the job, and the request to stop it that RunPod's stop sets."""


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
    SDK's loop stays free to take jobs and post results meanwhile. A dict output gains ``WORKER_WAIT_KEY``:
    how long the job waited for its turn.

    RunPod stops a job (cancelled, timed out) by cancelling its task here. A job cancelled while it waits
    leaves at once. One cancelled while it trains sets its ``StopRequest``, which ends the trial within a
    batch, and holds the worker until the trial's thread has ended, however often it is cancelled, so a
    worker never trains two trials at once; the stopped trial's outcome goes nowhere, as the SDK posts
    nothing for a stopped job.
    """
    turn = asyncio.Lock()

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        arrived = time.monotonic()
        async with turn:
            waited = time.monotonic() - arrived
            stop = StopRequest()
            trial = asyncio.ensure_future(asyncio.to_thread(handler, job, stop))
            try:
                output = await asyncio.shield(trial)
            except asyncio.CancelledError:
                stop.set()
                while not trial.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([trial])
                if not trial.cancelled() and trial.exception() is not None:
                    log.debug(f"job {job.get('id')}: {trial.exception()}")
                raise
        return {**output, WORKER_WAIT_KEY: round(waited, 3)} if isinstance(output, dict) else output

    return handle
