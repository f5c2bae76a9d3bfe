"""``EmulatorProcess``: the emulator as a subprocess for tests and benchmarks, stopped without leftovers."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[3]
# Every process an EmulatorProcess starts inherits this variable with a token of its own, which is how
# stop() finds leftovers without trusting process ids or groups that the system may have reused.
TOKEN_VAR = "RUNPOD_EMULATOR_TOKEN"


class EmulatorError(RuntimeError):
    """The emulator did not start, or answered a control request with an error."""


class EmulatorProcess:
    """A running ``python -m launchers.runpod.emulator``: its API base, its stats and its faults.

    Use it as a context manager; ``stop()`` ends the emulator with SIGTERM, then kills any process it
    started that is still alive (found by a token in its environment) and lists them in ``leftover_pids``.
    """

    def __init__(
        self,
        workers: int = 1,
        worker_command: Sequence[str] | None = None,
        api_key: str | None = None,
        endpoint_id: str = "local",
        env: Mapping[str, str] | None = None,
        log_dir: Path | str | None = None,
        *,
        execution_timeout_s: float | None = None,
        startup_timeout_s: float = 180.0,
        workers_min: int | None = None,
        idle_timeout_s: int = 5,
        cold_start_s: float = 0.0,
        flashboot_cold_start_s: float | None = None,
        gpu_count: int = 1,
        gpu_pool: str = "ADA_24",
        endpoint_name: str = "hpo-emulator",
        rate_limit_window_s: float = 10.0,
        rate_limit_scale: float = 1.0,
        error_rate: float = 0.0,
        seed: int | None = None,
        status_delay_s: float = 0.0,
        kill_worker_jobs: int = 0,
        kill_after_s: float = 0.5,
        timeout_jobs: int = 0,
        timeout_after_s: float = 0.5,
        running_state: bool = False,
        brownout_s: float = 0.0,
        hang_s: float = 12.0,
        lost_answers: int = 0,
        throttled_workers: int = 0,
        python: str = sys.executable,
    ) -> None:
        self.workers = workers
        self.workers_min = workers if workers_min is None else workers_min
        self.api_key = api_key or secrets.token_urlsafe(16)
        self.endpoint_id = endpoint_id
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="runpod-emulator-"))
        self.startup_timeout_s = startup_timeout_s
        self.api_base = ""
        self.leftover_pids: list[int] = []
        args = [python, "-m", "launchers.runpod.emulator", "--workers", str(workers), "--port", "0"]
        args += ["--endpoint-id", endpoint_id, "--log-dir", str(self.log_dir)]
        args += ["--startup-timeout-s", str(startup_timeout_s)]
        settings = {
            "workers-min": workers_min,
            "idle-timeout-s": idle_timeout_s,
            "cold-start-s": cold_start_s,
            "flashboot-cold-start-s": flashboot_cold_start_s,
            "gpu-count": gpu_count,
            "gpu-pool": gpu_pool,
            "endpoint-name": endpoint_name,
            "rate-limit-window-s": rate_limit_window_s,
            "rate-limit-scale": rate_limit_scale,
        }
        args += [
            item
            for name, value in settings.items()
            if value is not None
            for item in (f"--{name}", str(value))
        ]
        if worker_command is not None:
            args += ["--worker-command", shlex.join(worker_command)]
        if execution_timeout_s is not None:
            args += ["--execution-timeout-s", str(execution_timeout_s)]
        faults = {
            "error-rate": error_rate,
            "seed": seed,
            "status-delay-s": status_delay_s,
            "kill-worker-jobs": kill_worker_jobs,
            "kill-after-s": kill_after_s,
            "timeout-jobs": timeout_jobs,
            "timeout-after-s": timeout_after_s,
            "brownout-s": brownout_s,
            "hang-s": hang_s,
            "lost-answers": lost_answers,
            "throttled-workers": throttled_workers,
        }
        args += [
            item
            for name, value in faults.items()
            if value is not None
            for item in (f"--fault-{name}", str(value))
        ]
        if running_state:
            args.append("--fault-running-state")
        self._args = args
        pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self._token = secrets.token_hex(8)
        self._env = {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}
        self._env.update({"RUNPOD_API_KEY": self.api_key, TOKEN_VAR: self._token})
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def url(self) -> str:
        """The endpoint's URL, ``<api_base>/<endpoint_id>``."""
        return f"{self.api_base}/{self.endpoint_id}"

    @property
    def rest_api_base(self) -> str:
        """The base of the emulator's REST API v2, ``<base>/rest`` (RunPod's is https://api.runpod.io)."""
        return f"{self._root()}/rest"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "emulator.log"

    def start(self) -> EmulatorProcess:
        """Start the emulator and wait for its ``ready:`` line; EmulatorError with its stderr if it fails."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "ab") as stderr:
            self._proc = subprocess.Popen(
                self._args, env=self._env, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                text=True, start_new_session=True,
            )  # fmt: skip
        atexit.register(self.stop)
        threading.Thread(target=self._drain, args=(self._proc,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout_s + 30
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise EmulatorError(f"the RunPod emulator did not become ready:\n{self._stderr_tail()}")
            if line.startswith("ready: "):
                self.api_base = line.removeprefix("ready: ").strip()
                break
        self.stats()
        return self

    def health(self) -> dict[str, Any]:
        """The endpoint's ``/health``, retried through injected 429/503 errors."""
        for _ in range(50):
            try:
                return self._call("GET", f"{self.url}/health")
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503):
                    raise
        raise EmulatorError("/health kept failing with injected errors")

    def stats(self) -> dict[str, Any]:
        """The emulator's counts: requests, injected errors, jobs by state, worker restarts and pids."""
        return dict(self._call("GET", f"{self._root()}/_emulator/stats"))

    def billing(self) -> dict[str, Any]:
        """What the endpoint's workers cost so far: ``worker_seconds``, ``usd`` and one row per worker."""
        return dict(self.stats()["billing"])

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change faults at runtime: ``error_rate``, ``seed``, ``status_delay_s``, ``kill_worker_jobs``..."""
        return self._call("POST", f"{self._root()}/_emulator/faults", changes)

    def wait_idle(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until no job is waiting or running and at most workers.min workers are left, each idle
        past the idle timeout (billing has stopped for all others); the last stats."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            limits, workers = stats["endpoint"]["workers"], stats["workers"].values()
            busy = stats["jobs"]["IN_QUEUE"] + stats["jobs"]["IN_PROGRESS"]
            if (
                not busy
                and len(workers) <= limits["min"]
                and all(w["state"] == "idle" and w["idle_s"] >= limits["idleTimeout"] for w in workers)
            ):
                return stats
            if time.monotonic() > deadline:
                raise EmulatorError(f"the endpoint was not idle after {timeout_s:g} s: {stats['workers']}")
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        return list(self.stats()["worker_pids"])

    def wait_workers(self, *states: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until there are workers.min workers or more, each in one of ``states`` (default idle: polling,
        no job); the last stats.

        A worker is ``initializing`` until it first polls for a job, then ``idle`` or ``running``; it may
        also be ``throttled`` or ``unhealthy``.
        """
        states = states or ("idle",)
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            workers = stats["workers"]
            if len(workers) >= self.workers_min and all(w["state"] in states for w in workers.values()):
                return stats
            if time.monotonic() > deadline:
                raise EmulatorError(f"workers not all {' or '.join(states)} after {timeout_s:g} s: {workers}")
            time.sleep(0.05)

    def processes(self) -> list[psutil.Process]:
        """The live processes this emulator started: itself, its workers and whatever they forked."""
        return tagged_processes(self._token)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the emulator and wait; then SIGKILL any process it started that is still alive."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 2.0  # processes SIGKILLed by the emulator may take a moment to die
        while (leftovers := tagged_processes(self._token)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for leftover in leftovers:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        self.leftover_pids = [p.pid for p in leftovers]

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _root(self) -> str:
        return self.api_base.removesuffix("/v2")

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                raise EmulatorError(exc.read().decode(errors="replace")) from None
            raise

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _stderr_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no stderr)"


def tagged_processes(token: str) -> list[psutil.Process]:
    """Live processes (not zombies, not this one) whose environment carries ``token`` in TOKEN_VAR."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except psutil.Error:
            continue
    return found
