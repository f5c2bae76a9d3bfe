"""The local backend: jobs run on this machine, in one long-lived Python process per worker slot.

A slot's process (``launchers.local_slot``) runs job after job, so the interpreter, Hydra and TensorFlow
start once per slot rather than once per trial. Slots are forked by a zygote process
(``launchers.slot_zygote``) started as the sweep sets up, which imports ``launcher.preload`` (hpo's app:
its trials' libraries) while the driver gets ready: every slot starts with them loaded, and TensorFlow's
import is paid once per sweep, not once per slot. Jobs come through pipes as cloudpickle's pickles (as
submitit's are), not as multiprocessing tasks: multiprocessing runs the user's ``__main__`` script again in
its spawned and fork-server workers and pickles task functions by name, which breaks ``@hydra.main``
scripts and closures, and submitit's unit is one call per process (its time limit and cancel act on the
whole process). Slot processes outlive one ``launch`` (the batch sweeper launches once per batch), like
joblib's reusable executor, and end with the driver.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn

from hpo.core.errors import BackendError
from launchers import preloading
from launchers.backend import Backend, JobHandle, settled
from launchers.hydra_job import JobResult, JobRunner, JobSpec
from launchers.local_slot import JobRequest
from launchers.preloading import SlotZygote
from launchers.slot_zygote import INT

# how long a cancelled or timed-out job gets to stop after SIGTERM before its process is killed
KILL_GRACE_S = 10.0
# the longest the sweeper waits for a job to stop before checking time limits again
CHECK_INTERVAL_S = 1.0
# how long an ended slot's exit status may take to come from the zygote, after a SIGKILL
STATUS_WAIT_S = 5.0
# a slot whose zygote ended before it could report the slot's exit status
UNKNOWN_EXIT = 255


def stop_preloading() -> None:
    """End the slot zygote a sweep on another backend has no use for (the CLI starts one first thing),
    unless slots forked from it still run."""
    if not _slots:
        preloading.end_zygote()


class SlotProcess:
    """One slot's process and the pipes to it; ``busy`` while a job sent to it has not come back. Its
    exit status comes from the zygote that forked it, on a pipe of its own."""

    def __init__(self, gpus: list[int], log_path: Path, zygote: SlotZygote) -> None:
        self.gpus = gpus
        self.pid: int | None = None
        self.busy = False
        self.zygote = zygote
        self._code: int | None = None
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        prunes_read, prunes_write = os.pipe()
        status_read, status_write = os.pipe()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        theirs = (jobs_read, results_write, prunes_read, status_write)
        try:
            zygote.fork(self, theirs, log_path)
        finally:
            for fd in theirs:
                os.close(fd)
        self.jobs = Connection(jobs_write, readable=False)
        self.results = Connection(results_read, writable=False)
        self.prunes = Connection(prunes_write, readable=False)
        self._status = status_read

    @property
    def visible_devices(self) -> str:
        return ",".join(str(gpu) for gpu in self.gpus)

    def exitcode(self, timeout_s: float = 0.0) -> int | None:
        """The process's exit code (negative: the signal that killed it), waiting up to ``timeout_s`` for it;
        None while it runs or has yet to start."""
        if self._code is None and select.select([self._status], [], [], timeout_s)[0]:
            data = os.read(self._status, INT.size)
            self._code = INT.unpack(data)[0] if len(data) == INT.size else UNKNOWN_EXIT
        return self._code

    def alive(self) -> bool:
        return self.exitcode() is None

    def kill(self, sig: int) -> None:
        """Send ``sig`` to the process's group (its job's processes too), once the zygote has forked it."""
        self.zygote.receive_pids(wait=True)
        if self.pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def close(self, wait_s: float = 1.0) -> None:
        """Let the process end on its own (it exits at EOF), killing it if it has not within ``wait_s``; one
        the zygote has yet to fork reads that EOF as it starts, and ends."""
        self.jobs.close()
        self.zygote.receive_pids(wait=False)
        if self.pid is not None and self.exitcode(wait_s) is None:
            self.kill(signal.SIGKILL)
            self.exitcode(STATUS_WAIT_S)
        self.results.close()
        self.prunes.close()
        os.close(self._status)


# slot number -> its process, shared by every LocalBackend of this driver
_slots: dict[int, SlotProcess] = {}


@atexit.register
def _close_slots() -> None:
    """End every slot process as the driver exits: idle ones at EOF, a busy one (normally cancelled
    already) with a KeyboardInterrupt first, so its job can record how it ended."""
    deadline = time.monotonic() + 5.0
    for process in _slots.values():
        process.jobs.close()
        if process.busy:
            process.kill(signal.SIGTERM)
    for process in _slots.values():
        process.close(wait_s=max(deadline - time.monotonic(), 0.0))
    _slots.clear()
    preloading.end_zygote()


def _slot_process(slot: int, gpus: list[int], log_path: Path) -> SlotProcess:
    """The idle process of ``slot``, started (again) if it has none, or one that is busy, dead or on
    other GPUs."""
    current = _slots.get(slot)
    zygote = preloading.current_zygote(log_path.parent.parent)
    reusable = current is not None and current.zygote is zygote and current.gpus == gpus
    if current is not None and reusable and not current.busy and current.alive():
        return current
    if current is not None and not current.busy:
        current.close()
    _slots[slot] = SlotProcess(gpus, log_path, zygote)
    return _slots[slot]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"its process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"its process was killed by signal {-code}"
    return f"its process exited with code {code}"


class LocalJobHandle(JobHandle):
    """A job running in a slot's process; ``progress`` is its trial's last reported epoch, and once it has
    come back, ``run_id`` and ``optuna_state`` are those of the trial run it closed."""

    def __init__(self, slot: SlotProcess, spec: JobSpec, timeout_s: float, log_path: Path) -> None:
        self._slot = slot
        self._spec = spec
        self._deadline = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._log_path = log_path
        self._outcome: JobReturn | BackendError | None = None
        self._stopping: tuple[str, float] | None = None
        self.progress: dict[str, Any] | None = None

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        if self._receive():
            return True
        code = self._slot.exitcode()
        if code is not None:
            if not self._receive():
                reason = self._stopping[0] if self._stopping else _describe_exit(code)
                self._outcome = BackendError(
                    f"job #{self._spec.num} stopped without a result ({reason}); its log is {self._log_path}"
                )
                self._slot.busy = False
            return True
        now = time.monotonic()
        if self._stopping is None and now > self._deadline:
            self._stop(f"timed out after {self._timeout_s / 60:g} min")
        elif self._stopping is not None and now > self._stopping[1] + KILL_GRACE_S:
            self._slot.kill(signal.SIGKILL)
        return False

    @property
    def pending(self) -> bool:
        """Whether the job's return has not been received yet."""
        return self._outcome is None

    @property
    def results(self) -> Connection:
        """The pipe its slot sends the return on (readable at EOF too, when the slot dies)."""
        return self._slot.results

    def result(self) -> JobReturn:
        return settled(self._outcome)

    def cancel(self) -> None:
        if self._outcome is None and self._stopping is None:
            self._stop("cancelled")

    def prune(self) -> None:
        """Stop the job's trial at its next batch as pruned; the slot's process stays for the next job."""
        if self._outcome is None and self._stopping is None:
            with contextlib.suppress(OSError):
                self._slot.prunes.send_bytes(pickle.dumps(self._spec.num))

    def _stop(self, reason: str) -> None:
        self._stopping = (reason, time.monotonic())
        self._slot.kill(signal.SIGTERM)

    def _receive(self) -> bool:
        """Take the progress the slot has sent, and the job's return if it has; never blocks for more than
        reading them."""
        while True:
            try:
                if not self._slot.results.poll(0):
                    return False
                message = pickle.loads(self._slot.results.recv_bytes())
            except (EOFError, OSError):
                return False
            if not isinstance(message, dict):
                break
            self.progress = message
        result = message
        assert isinstance(result, JobResult) and isinstance(result.ret, JobReturn)
        self._slot.busy = False
        self._outcome = result.ret
        if result.closed_runs:
            closed = result.closed_runs[-1]
            self.run_id, self.optuna_state = closed.run_id, closed.optuna_state
        return True


def gpu_pool() -> list[int]:
    """The GPUs on offer: ``CUDA_VISIBLE_DEVICES`` when set (as Slurm sets it), else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        try:
            return [int(d) for d in visible.split(",") if d.strip()]
        except ValueError:
            raise BackendError(
                f"CUDA_VISIBLE_DEVICES={visible!r}: the local backend needs GPU indices (e.g. 0,1), not UUIDs"
            ) from None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


class LocalBackend(Backend):
    """Runs jobs in this machine's slot processes, one job per slot at a time.

    Each worker slot owns its own GPUs (slot i gets the i-th group of ``gpus_per_worker``), so
    concurrent trials never share a card; with ``gpus_per_worker=0`` jobs see no GPU at all.
    """

    def __init__(
        self,
        runner: JobRunner,
        jobs_dir: Path,
        timeout_min: int,
        workers: int,
        gpus_per_worker: int,
        preload: Sequence[str] = (),
    ) -> None:
        import cloudpickle

        pool = gpu_pool() if gpus_per_worker else []
        if gpus_per_worker * workers > len(pool):
            raise BackendError(
                f"{workers} workers x {gpus_per_worker} GPU(s) each need {gpus_per_worker * workers} GPUs, "
                f"but this machine offers {len(pool)}: lower launcher.workers or choose a hardware profile "
                "with fewer GPUs per worker (hardware=cpu trains on the CPU)"
            )
        self._slot_gpus = [pool[i * gpus_per_worker : (i + 1) * gpus_per_worker] for i in range(workers)]
        self._jobs_dir = jobs_dir
        self._timeout_s = timeout_min * 60.0
        # the runner is the same for every job: pickled once, loaded once per slot process
        self._runner_path = self._path("runner") / f"{uuid.uuid4().hex}.pkl"
        self._runner_path.parent.mkdir(parents=True, exist_ok=True)
        self._runner_path.write_bytes(cloudpickle.dumps(runner))
        # start every slot now: libraries and runner load while the sweeper gets its first trials ready
        preloading.start_preloading(preload, jobs_dir)
        for slot, gpus in enumerate(self._slot_gpus):
            process = _slot_process(slot, gpus, self._slot_log(slot))
            with contextlib.suppress(OSError):
                process.jobs.send_bytes(pickle.dumps(str(self._runner_path)))

    def wait(self, handles: Sequence[JobHandle]) -> bool:
        """Block until a running job's slot sends its return or dies, or for CHECK_INTERVAL_S, when job time
        limits are checked."""
        waiting = [h.results for h in handles if isinstance(h, LocalJobHandle) and h.pending]
        if waiting:
            connection_wait(waiting, CHECK_INTERVAL_S)
        return True

    def _path(self, name: str) -> Path:
        """The folder of job ``name`` (its pickled spec and log), a slot's or the runner's."""
        return self._jobs_dir / name

    def _slot_log(self, slot: int) -> Path:
        return self._path(f"slot{slot}") / "slot.log"

    def submit(self, spec: JobSpec, slot: int) -> LocalJobHandle:
        import cloudpickle

        gpus = self._slot_gpus[slot]
        job_dir = self._path(str(spec.num))
        job_dir.mkdir(parents=True, exist_ok=True)
        spec_path, log_path = job_dir / "spec.pkl", job_dir / "job.log"
        # cloudpickle: a class Hydra's plugin scan re-executed since import is pickled by value, not by name
        spec_path.write_bytes(cloudpickle.dumps(spec))
        environ = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(gpu) for gpu in gpus)}
        request = JobRequest(
            spec.num, str(spec_path), str(self._runner_path), environ, os.getcwd(), str(log_path)
        )
        for attempt in range(2):
            process = _slot_process(slot, gpus, self._slot_log(slot))
            try:
                process.jobs.send_bytes(pickle.dumps(request))
                break
            except OSError:
                # the process died while idle: the next attempt starts a fresh one
                if attempt == 1:
                    raise BackendError(
                        f"slot {slot}'s process cannot take jobs; its log is {log_path}"
                    ) from None
        process.busy = True
        return LocalJobHandle(process, spec, self._timeout_s, log_path)
