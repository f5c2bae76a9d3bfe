"""How hpo's handlers run under the runpod SDK's serverless loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def in_thread(handler: Handler) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """``handler`` as an async handler that runs it in a thread.

    The SDK awaits a handler on its event loop, so a plain function blocks that loop for the whole trial:
    the loop that takes jobs then wakes on its one-second poll only after the trial, and the worker idles
    about a second between jobs (measured with ``python -m hpo.bench dispatch --backend runpod``). Run in
    a thread, the trial leaves the loop free, and the next job is taken within that poll. A cancelled job
    still waits for its trial to end, so a worker never runs two trials at once.
    """

    async def handle(job: dict[str, Any]) -> dict[str, Any]:
        trial = asyncio.ensure_future(asyncio.to_thread(handler, job))
        try:
            return await asyncio.shield(trial)
        except asyncio.CancelledError:
            await trial
            raise

    return handle
