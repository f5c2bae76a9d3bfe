"""``python -m launchers.local_slot JOBS_FD RESULTS_FD``: one local worker slot's long-lived process.

It reads job requests from one pipe, runs them one at a time and writes each ``JobResult`` to the other,
so Python, Hydra and whatever the task imports (TensorFlow) load once per slot instead of once per job.
Every job runs with the driver's environment and working directory as they were when it was submitted,
and writes its stdout and stderr to its own log. SIGTERM stops the running job with a KeyboardInterrupt
(so it can record itself as killed); the process ends when the driver closes the pipe or dies.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from hpo.core.collector import freeze_setup
from hpo.core.process import own_process

if TYPE_CHECKING:
    from launchers.hydra_job import JobResult

# how often the process checks that the driver is still alive, and how long a job then gets to stop
PARENT_CHECK_S = 1.0
ORPHAN_GRACE_S = 10.0


@dataclass
class JobRequest:
    """One job for a slot: where its pickled spec and runner are, and the context to run it in."""

    num: int
    spec_path: str
    runner_path: str
    environ: dict[str, str]
    cwd: str
    log_path: str


def _exit_with_parent() -> None:
    """Interrupt the running job once the driver is gone (it can record itself as killed), then end this
    slot and whatever the job started."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _redirect_output(log_path: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _dumps_result(result: JobResult, num: int) -> bytes:
    """The pickled ``JobResult``; a return value that cannot be pickled becomes the job's failure."""
    import cloudpickle
    from hydra.core.utils import JobStatus

    try:
        return bytes(cloudpickle.dumps(result))
    except Exception as exc:
        result.ret.status = JobStatus.FAILED
        result.ret._return_value = RuntimeError(
            f"job #{num} returned a value that cannot be sent back: {exc}"
        )
        return bytes(cloudpickle.dumps(result))


def serve(jobs: Connection, results: Connection) -> None:
    """Run every job that comes in on ``jobs`` and send its return on ``results``, until EOF.

    A message that is only a path loads the runner pickled there ahead of its jobs, so that the task's
    imports happen while the driver is still getting ready.
    """
    import cloudpickle

    runner: Any = None
    runner_path = ""
    while True:
        try:
            request: JobRequest | str = pickle.loads(jobs.recv_bytes())
        except EOFError:
            return
        path = request if isinstance(request, str) else request.runner_path
        if path != runner_path:
            with open(path, "rb") as f:
                runner, runner_path = cloudpickle.load(f), path
            freeze_setup()
        if isinstance(request, str):
            continue
        _redirect_output(request.log_path)
        os.environ.clear()
        os.environ.update(request.environ)
        os.chdir(request.cwd)
        with open(request.spec_path, "rb") as f:
            spec = pickle.load(f)
        results.send_bytes(_dumps_result(runner(spec), request.num))


def main() -> None:
    own_process()
    _exit_with_parent()
    jobs_fd, results_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        serve(Connection(jobs_fd, writable=False), Connection(results_fd, readable=False))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
