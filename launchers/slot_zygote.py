"""``python -m launchers.slot_zygote CONTROL_FD MODULES``: the process local slots are forked from.

It imports ``MODULES`` (comma-separated; hpo's app names its trials' libraries) once, then forks a slot
for each request the driver sends on its socket ``CONTROL_FD``: the slot's pipes come with the request,
its pid goes back, and once it ends its exit status is written to the status pipe the request brought.
TensorFlow's import is paid once per sweep instead of once per slot, and a slot never runs the driver's
main module (multiprocessing's fork server imports it again in each child). Once the driver closes the
socket, it ends with the last of its slots (which end when the driver closes their pipes).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
from typing import NoReturn

from hpo.core.collector import freeze_before_forks

# a pid or an exit status on the wire
INT = struct.Struct("i")
# the pipes a request brings: the slot's jobs (read), results (write), prunes (read), and its status (write)
PIPES = 4


def _preload(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            # the slot imports it again when its job needs it, and the job reports the error
            traceback.print_exc()


def _reap(children: dict[int, int]) -> None:
    """Write the exit status of each slot that ended to its status pipe."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, INT.pack(os.waitstatus_to_exitcode(status)))
            os.close(fd)


def _run_child(fds: list[int], request: dict[str, str]) -> NoReturn:
    """Run a forked slot to its end without ever returning into the zygote's loop."""
    from launchers.local_slot import run_slot

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        run_slot(fds[0], fds[1], fds[2], request["log_path"], request["visible_devices"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _receive(control: socket.socket) -> tuple[dict[str, str] | None, list[int]]:
    """The next request and its pipes, or None at the end of the socket (a stream, so that the zygote runs
    where Unix sockets have no packets: a request is its length, its pipes with it, then its JSON)."""
    try:
        head, fds, _, _ = socket.recv_fds(control, INT.size, PIPES, socket.MSG_WAITALL)
        if len(head) != INT.size or len(fds) != PIPES:
            return None, fds
        body = control.recv(INT.unpack(head)[0], socket.MSG_WAITALL)
    except OSError:
        return None, []
    return json.loads(body), fds


def serve(control: socket.socket) -> None:
    """Fork a slot per request until the driver closes ``control``."""
    children: dict[int, int] = {}
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    accepting = True
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ)
        selector.register(wake_read, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj != control:
                    os.read(wake_read, 4096)
                    _reap(children)
                    if not children and not accepting:
                        return
                    continue
                request, fds = _receive(control)
                if request is None:
                    # the driver is done with this zygote: it ends once its slots have, reporting on them
                    selector.unregister(control)
                    accepting = False
                    if not children:
                        return
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    control.close()
                    for fd in (wake_read, wake_write, fds[3], *children.values()):
                        os.close(fd)
                    _run_child(fds, request)
                for fd in fds[:3]:
                    os.close(fd)
                children[pid] = fds[3]
                control.sendall(INT.pack(pid))


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    _preload([name for name in sys.argv[2].split(",") if name])
    freeze_before_forks()
    sys.stdout.flush()
    sys.stderr.flush()
    serve(control)
    # nothing to clean up in a fork template, and the interpreter's teardown (TensorFlow's) takes seconds
    # that the exiting driver would wait for
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
