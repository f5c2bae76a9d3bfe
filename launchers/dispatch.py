"""Keeps up to ``workers`` jobs in flight on a backend and collects their returns in order."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from hpo.errors import BackendError
from launchers.backend import Backend, JobHandle
from launchers.job import JobSpec, failed_return

log = logging.getLogger(__name__)

# how long cancelled jobs get to stop before the interruption propagates
CANCEL_GRACE_S = 15.0


def _collect(spec: JobSpec, handle: JobHandle, elapsed_s: float) -> JobReturn:
    try:
        ret = handle.result()
    except BackendError as exc:
        ret = failed_return(spec, exc)
    if ret.status == JobStatus.COMPLETED:
        log.info(f"#{spec.num} done in {elapsed_s:.1f}s: {ret._return_value}")
    else:
        log.warning(f"#{spec.num} failed after {elapsed_s:.1f}s: {ret._return_value}")
    return ret


def run_jobs(
    backend: Backend, specs: Sequence[JobSpec], workers: int, poll_interval_s: float
) -> list[JobReturn]:
    """Run every job, never more than ``workers`` at once, starting the next as soon as one ends.

    On any interruption (Ctrl-C included) the jobs still running are cancelled before it propagates.
    """
    pending = deque(specs)
    free_slots = list(range(workers))
    running: dict[int, tuple[JobSpec, JobHandle, float, int]] = {}
    returns: dict[int, JobReturn] = {}
    try:
        while pending or running:
            while pending and free_slots:
                spec, slot = pending.popleft(), free_slots.pop(0)
                log.info(f"#{spec.num} start: {' '.join(filter_overrides(spec.overrides))}")
                running[spec.num] = (spec, backend.submit(spec, slot), time.monotonic(), slot)
            finished = [num for num, (_, handle, _, _) in running.items() if handle.done()]
            for num in finished:
                spec, handle, started, slot = running.pop(num)
                free_slots.append(slot)
                returns[num] = _collect(spec, handle, time.monotonic() - started)
            if not finished:
                time.sleep(poll_interval_s)
    except BaseException:
        for spec, handle, _, _ in running.values():
            log.warning(f"#{spec.num} cancelled")
            handle.cancel()
        _wait_until_stopped([handle for _, handle, _, _ in running.values()], poll_interval_s)
        raise
    return [returns[spec.num] for spec in specs]


def _wait_until_stopped(handles: list[JobHandle], poll_interval_s: float) -> None:
    """Give cancelled jobs a moment to record how they ended, so nothing is reported before it is true."""
    deadline = time.monotonic() + CANCEL_GRACE_S
    while any(not h.done() for h in handles) and time.monotonic() < deadline:
        time.sleep(poll_interval_s)
