"""``python -m launchers.local_slot JOBS_FD RESULTS_FD PRUNES_FD``: one local worker slot's long-lived
process.

It reads job requests from one pipe, runs them one at a time and writes each ``JobResult`` to the other,
so Python, Hydra and whatever the task imports (TensorFlow) load once per slot instead of once per job.
Every job runs with the driver's environment and working directory as they were when it was submitted,
and writes its stdout and stderr to its own log. While a job runs, its trial's per-epoch progress goes
back on the results pipe as a dict (``hpo.core.trial_channel.Progress``), and a job number read from the
third pipe prunes that job (its trial stops at its next batch; the process stays for the next job).
SIGTERM stops the running job with a KeyboardInterrupt (so it can record itself as killed); the process
ends when the driver closes the pipe or dies.
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

from hpo.core import trial_channel
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


class _Current:
    """The number of the job the slot runs (None between jobs), and the last job a prune named (which may
    come before its job starts); changed and matched under ``lock``, so a prune reaches the job it named
    and no other."""

    num: int | None = None
    pruned: int | None = None
    lock = threading.Lock()


def _listen_for_prunes(prunes: Connection) -> None:
    """Prune the job the driver names on ``prunes``, now if it runs, else as it starts."""

    def listen() -> None:
        while True:
            try:
                num = pickle.loads(prunes.recv_bytes())
            except (EOFError, OSError):
                return
            with _Current.lock:
                _Current.pruned = num
                if num == _Current.num:
                    trial_channel.prune()

    threading.Thread(target=listen, name="prune-listener", daemon=True).start()


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
        print(f"job #{request.num} in slot process {os.getpid()}", flush=True)
        os.environ.clear()
        os.environ.update(request.environ)
        os.chdir(request.cwd)
        with open(request.spec_path, "rb") as f:
            spec = pickle.load(f)
        num = request.num
        # plain dicts (this module runs as __main__, so a class of its own would not unpickle in the driver)
        trial_channel.set_sink(lambda progress: results.send_bytes(pickle.dumps(progress)))
        with _Current.lock:
            trial_channel.reset()
            _Current.num = num
            if _Current.pruned == num:
                trial_channel.prune()
        try:
            ret = runner(spec)
        finally:
            with _Current.lock:
                _Current.num = None
            trial_channel.set_sink(None)
        results.send_bytes(_dumps_result(ret, num))


def main() -> None:
    own_process()
    _exit_with_parent()
    jobs_fd, results_fd, prunes_fd = (int(fd) for fd in sys.argv[1:4])
    _listen_for_prunes(Connection(prunes_fd, writable=False))
    try:
        serve(Connection(jobs_fd, writable=False), Connection(results_fd, readable=False))
    except KeyboardInterrupt:
        sys.exit(130)
    # the driver closed the pipe: every job has come back, with its runs closed, so nothing is left to do and
    # the interpreter's teardown (TensorFlow's takes seconds, and the exiting driver waits for it) is skipped
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
