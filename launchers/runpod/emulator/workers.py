"""The worker pool: real worker processes, each in its own process group, replaced whenever one ends."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_CRASH_LOOP_S = 5.0  # a worker that dies sooner than this after starting is restarted with a backoff


@dataclass
class Worker:
    """One worker process: its RunPod id, its log and the jobs it holds."""

    slot: int
    id: str
    process: asyncio.subprocess.Process
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    polled: bool = False  # has asked for a job at least once
    job_ids: set[str] = field(default_factory=set)
    retiring: bool = False  # stopped on purpose (cancel, timeout, refresh): its end is no loss

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def state(self) -> str:
        if self.job_ids:
            return "running"
        return "idle" if self.polled else "initializing"


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL the worker if the emulator dies, so a killed emulator leaves no worker behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class WorkerPool:
    """Keeps ``size`` worker processes alive, calling ``on_exit`` for each one that ends.

    ``env_for`` gives a worker's whole environment from its id.
    """

    def __init__(
        self,
        size: int,
        command: Sequence[str],
        env_for: Callable[[str], Mapping[str, str]],
        log_dir: Path,
        on_exit: Callable[[Worker, int], None],
    ) -> None:
        self.size = size
        self.command = list(command)
        self.env_for = env_for
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.workers: dict[int, Worker] = {}
        self.retired_pids: list[int] = []
        self.restarts = 0
        self.early_exits: list[str] = []  # workers that ended before ever polling, described
        self.closing = False
        self._fast_exits = dict.fromkeys(range(size), 0)
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for slot in range(self.size):
            await self._spawn(slot)

    def by_id(self, worker_id: str) -> Worker | None:
        return next((w for w in self.workers.values() if w.id == worker_id), None)

    def ready(self) -> bool:
        """Whether every slot has a live worker that has polled for a job."""
        return len(self.workers) == self.size and all(w.polled for w in self.workers.values())

    def kill(self, worker: Worker, *, expected: bool) -> None:
        """SIGKILL a worker's whole process group; its end is reported as a loss unless ``expected``."""
        worker.retiring = worker.retiring or expected
        _killpg(worker.pid, signal.SIGKILL)

    def counts(self) -> dict[str, int]:
        counts = {"idle": 0, "initializing": 0, "running": 0}
        for worker in self.workers.values():
            counts[worker.state] += 1
        return counts

    async def close(self, grace_s: float = 3.0) -> None:
        """Stop every worker: SIGTERM, then SIGKILL to whatever of its process group is left."""
        self.closing = True
        for worker in self.workers.values():
            worker.retiring = True
            _killpg(worker.pid, signal.SIGTERM)
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=grace_s)
        for worker in list(self.workers.values()):
            _killpg(worker.pid, signal.SIGKILL)
        if self._watchers:
            await asyncio.wait(set(self._watchers), timeout=grace_s)

    async def _spawn(self, slot: int) -> None:
        worker_id = f"w{slot}-{secrets.token_hex(4)}"
        log_path = self.log_dir / f"{worker_id}.log"
        env = dict(self.env_for(worker_id))
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        worker = Worker(slot, worker_id, process, log_path)
        self.workers[slot] = worker
        task = asyncio.create_task(self._watch(worker))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, worker: Worker) -> None:
        code = await worker.process.wait()
        _killpg(worker.pid, signal.SIGKILL)  # whatever it forked (the SDK's heartbeat process) goes with it
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        self.retired_pids.append(worker.pid)
        if not worker.polled and not worker.retiring:
            self.early_exits.append(
                f"worker {worker.id} {describe_exit(code)} before polling; log {worker.log_path}"
            )
        self.on_exit(worker, code)
        if self.closing:
            return
        if not worker.retiring:
            crashed_fast = time.monotonic() - worker.started < _CRASH_LOOP_S
            self._fast_exits[worker.slot] = self._fast_exits[worker.slot] + 1 if crashed_fast else 0
            if self._fast_exits[worker.slot] > 1:
                await asyncio.sleep(min(30.0, 0.5 * 2 ** self._fast_exits[worker.slot]))
        if not self.closing:
            self.restarts += 1
            await self._spawn(worker.slot)


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


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
