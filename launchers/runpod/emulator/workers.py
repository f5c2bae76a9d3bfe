"""The worker pool: workers placed on demand, booted after a cold start, each process in its own group.

A worker is billed from its placement (cold start included) until it is stopped or its process ends;
a THROTTLED worker is wanted but not yet placed, so it is not billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_CRASH_LOOP_S = 5.0  # a worker that dies sooner than this after starting is replaced with a backoff

INITIALIZING, IDLE, RUNNING = "INITIALIZING", "IDLE", "RUNNING"
THROTTLED, UNHEALTHY = "THROTTLED", "UNHEALTHY"
WORKER_STATES = (IDLE, INITIALIZING, RUNNING, THROTTLED, UNHEALTHY)


@dataclass
class Worker:
    """One worker: its RunPod id, its GPUs, its process once booted, and the jobs it holds."""

    slot: int
    id: str
    log_path: Path
    pool: str
    gpu_count: int
    throttled: bool = False
    placed: float | None = None  # billing starts here (monotonic)
    stopped: float | None = None  # billing ends here: the stop decision or the process's end
    cold_start_s: float = 0.0
    backoff_s: float = 0.0  # a crash-looping slot's wait before booting: UNHEALTHY meanwhile
    process: asyncio.subprocess.Process | None = None
    started: float | None = None  # the process's start
    polled: bool = False  # has asked for a job at least once
    job_ids: set[str] = field(default_factory=set)
    ping_job_ids: set[str] = field(default_factory=set)  # what its last ping said it holds
    idle_since: float | None = None
    retiring: bool = False  # stopped on purpose (refresh, scale-down, close): its end is no loss
    scaled_down: bool = False
    pending_stops: list[str] = field(default_factory=list)  # job ids for its next job-stop poll
    stop_signal: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # stopped: its long-polls end at once

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def state(self) -> str:
        if self.throttled:
            return THROTTLED
        if self.job_ids:
            return RUNNING
        if self.polled:
            return IDLE
        booting = self.placed is not None and time.monotonic() < self.placed + self.backoff_s
        return UNHEALTHY if booting else INITIALIZING

    def idle_for(self, now: float) -> float:
        """Seconds without a job, both in the emulator's view and by its last ping; 0 when busy."""
        if self.state != IDLE or self.ping_job_ids or self.idle_since is None:
            return 0.0
        return now - self.idle_since

    def took(self, job_id: str) -> None:
        self.job_ids.add(job_id)
        self.idle_since = None

    def dropped(self, job_id: str) -> None:
        self.job_ids.discard(job_id)
        if not self.job_ids and not self.ping_job_ids:
            self.idle_since = time.monotonic()

    def pinged(self, job_ids: set[str]) -> None:
        self.ping_job_ids = job_ids
        if job_ids:
            self.idle_since = None
        elif not self.job_ids and self.polled and self.idle_since is None:
            self.idle_since = time.monotonic()


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the worker if the emulator dies, so a killed emulator leaves no worker behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerPool:
    """The endpoint's workers: ``place`` one, ``stop`` one; ``on_exit`` is called for each that ends.

    ``env_for`` gives a worker's whole environment from the worker.
    """

    def __init__(
        self,
        command: Sequence[str],
        env_for: Callable[[Worker], Mapping[str, str]],
        log_dir: Path,
        on_exit: Callable[[Worker, int], None],
    ) -> None:
        self.command = list(command)
        self.env_for = env_for
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.workers: dict[str, Worker] = {}
        self.ended: list[Worker] = []  # placed workers that are gone, for billing
        self.retired_pids: list[int] = []
        self.restarts = 0
        self.early_exits: list[str] = []  # workers that ended before ever polling, described
        self.closing = False
        self.ran_slots: set[int] = set()  # slots that booted a worker before (FlashBoot)
        self._fast_exits: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def by_id(self, worker_id: str) -> Worker | None:
        return self.workers.get(worker_id)

    def live(self) -> list[Worker]:
        """Workers that count toward the endpoint's size: wanted and not being stopped."""
        return [w for w in self.workers.values() if not w.retiring]

    def add(self, pool: str, gpu_count: int, *, throttled: bool) -> Worker:
        """A new worker in the lowest free slot, THROTTLED or else to be placed by the caller."""
        used = {w.slot for w in self.workers.values()}
        slot = next(i for i in range(len(used) + 1) if i not in used)
        worker_id = f"w{slot}-{secrets.token_hex(4)}"
        worker = Worker(slot, worker_id, self.log_dir / f"{worker_id}.log", pool, gpu_count, throttled)
        self.workers[worker_id] = worker
        return worker

    def place(self, worker: Worker, cold_start_s: float) -> None:
        """Start billing ``worker`` and boot its process after the cold start (and any crash backoff)."""
        fast = self._fast_exits.get(worker.slot, 0)
        worker.throttled, worker.placed, worker.cold_start_s = False, time.monotonic(), cold_start_s
        worker.backoff_s = min(30.0, 0.5 * 2**fast) if fast > 1 else 0.0
        self._track(self._boot(worker, worker.backoff_s + cold_start_s))

    def stop(self, worker: Worker, grace_s: float = 3.0) -> None:
        """Stop a worker on purpose, billing ends now: SIGTERM its group, SIGKILL what is left after grace."""
        worker.retiring = worker.scaled_down = True
        worker.stopped = worker.stopped or time.monotonic()
        worker.gone.set()
        if worker.process is None:
            self._forget(worker)
            return
        _killpg(worker.pid, signal.SIGTERM)
        asyncio.get_running_loop().call_later(grace_s, _kill_if_alive, worker.process)

    def kill(self, worker: Worker, *, expected: bool) -> None:
        """SIGKILL a worker's whole process group; its end is reported as a loss unless ``expected``."""
        worker.retiring = worker.retiring or expected
        if worker.process is not None:
            _killpg(worker.pid, signal.SIGKILL)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((s.lower() for s in WORKER_STATES), 0)
        for worker in self.workers.values():
            counts[worker.state.lower()] += 1
        return counts

    async def close(self, grace_s: float = 3.0) -> None:
        """Stop every worker: SIGTERM, then SIGKILL to whatever of its process group is left."""
        self.closing = True
        now = time.monotonic()
        for worker in list(self.workers.values()):
            worker.retiring = True
            worker.stopped = worker.stopped or now
            if worker.process is None:
                self._forget(worker)
            else:
                _killpg(worker.pid, signal.SIGTERM)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        for worker in list(self.workers.values()):
            if worker.process is not None:
                _killpg(worker.pid, signal.SIGKILL)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, worker: Worker, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if worker.retiring or self.closing:
            return
        self.ran_slots.add(worker.slot)
        with open(worker.log_path, "ab") as log:
            worker.process = await asyncio.create_subprocess_exec(
                *self.command,
                env=dict(self.env_for(worker)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        worker.started = time.monotonic()
        code = await worker.process.wait()
        _killpg(worker.pid, signal.SIGKILL)  # whatever it forked (the SDK's heartbeat process) goes with it
        self.retired_pids.append(worker.pid)
        if not worker.polled and not worker.retiring:
            self.early_exits.append(
                f"worker {worker.id} {describe_exit(code)} before polling; log {worker.log_path}"
            )
        if not worker.retiring:
            crashed_fast = worker.started is not None and time.monotonic() - worker.started < _CRASH_LOOP_S
            fast = self._fast_exits.get(worker.slot, 0) + 1 if crashed_fast else 0
            unfit = code == 1 and not worker.polled  # a failed fitness check: the slot turns UNHEALTHY
            self._fast_exits[worker.slot] = max(fast, 2) if unfit else fast
        if not worker.scaled_down and not self.closing:
            self.restarts += 1
        worker.stopped = worker.stopped or time.monotonic()
        self._forget(worker)
        self.on_exit(worker, code)

    def _forget(self, worker: Worker) -> None:
        if self.workers.get(worker.id) is worker:
            del self.workers[worker.id]
            if worker.placed is not None:
                self.ended.append(worker)


def describe_exit(code: int) -> str:
    """A worker's end in words: its exit code or the signal that killed it."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a worker's log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _kill_if_alive(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        _killpg(process.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    if pgid <= 0:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
