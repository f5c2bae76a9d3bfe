"""One local worker slot's long-lived process (``run_slot``, forked by ``launchers.slot_zygote``).

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

# how long the running job gets to stop once the driver is gone
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
    """Prune the job the driver names on ``prunes``, now if it runs, else as it starts. The pipe's end
    means the driver is gone (it closes it last, once this process has ended): the running job is
    interrupted (it can record itself as killed), then this slot and whatever the job started end."""

    def listen() -> None:
        while True:
            try:
                num = pickle.loads(prunes.recv_bytes())
            except (EOFError, OSError):
                break
            with _Current.lock:
                _Current.pruned = num
                if num == _Current.num:
                    trial_channel.prune()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=listen, name="prune-listener", daemon=True).start()


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
        # progress goes as plain dicts, which the driver tells from the JobResult that ends the job
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


def run_slot(jobs_fd: int, results_fd: int, prunes_fd: int, log_path: str, visible_devices: str) -> None:
    """The slot's process: in a session of its own (the driver stops it and what its job started as a
    group), seeing only its GPUs, writing to its log, serving jobs until the driver closes the jobs pipe."""
    os.setsid()
    os.environ["CUDA_VISIBLE_DEVICES"] = visible_devices
    _redirect_output(log_path)
    own_process()
    jobs = Connection(jobs_fd, writable=False)
    results = Connection(results_fd, readable=False)
    prunes = Connection(prunes_fd, writable=False)
    _listen_for_prunes(prunes)
    try:
        serve(jobs, results)
    except KeyboardInterrupt:
        sys.exit(130)
    # the driver closed the pipe: every job has come back, with its runs closed, so nothing is left to do and
    # the interpreter's teardown (TensorFlow's takes seconds, and the exiting driver waits for it) is skipped
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
