"""The driver's side of the slot zygote (``launchers.slot_zygote``), the process local slots are forked
from: one per driver, started as early as the driver can (``python -m hpo`` starts it before its own
imports, so this module imports the standard library alone) and kept while sweeps preload the same modules.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from launchers.slot_zygote import INT

if TYPE_CHECKING:
    from launchers.local import SlotProcess


class SlotZygote:
    """The process local slots are forked from (``launchers.slot_zygote``), with the modules it imported
    before its first fork, and the socket to it."""

    def __init__(self, modules: Sequence[str], log_path: Path | None) -> None:
        self.modules = tuple(modules)
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path or os.devnull, "ab") as log, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "launchers.slot_zygote", str(theirs.fileno()), ",".join(modules)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # slots whose pid has not come back yet, in the order they were asked for
        self._forking: deque[SlotProcess] = deque()

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, slot: SlotProcess, fds: tuple[int, int, int, int], log_path: Path) -> None:
        """Ask for ``slot``'s process, with its pipes' ends ``fds`` (jobs, results, prunes, status); never
        waits for the zygote, whose imports may still be under way."""
        request = json.dumps({"log_path": str(log_path), "visible_devices": slot.visible_devices}).encode()
        socket.send_fds(self.control, [INT.pack(len(request))], list(fds))
        self.control.sendall(request)
        self._forking.append(slot)

    def receive_pids(self, *, wait: bool) -> None:
        """Take the pids the zygote has sent back (``wait``: until every slot asked for has its own)."""
        if self.control.fileno() == -1:  # replaced by another zygote: the pids asked for are not read
            self._forking.clear()
        while self._forking:
            if not wait and not select.select([self.control], [], [], 0)[0]:
                return
            try:
                data = self.control.recv(INT.size, socket.MSG_WAITALL)
            except OSError:
                data = b""
            if len(data) != INT.size:  # the zygote is gone: no slot asked for will start
                self._forking.clear()
                return
            self._forking.popleft().pid = INT.unpack(data)[0]

    def close(self) -> None:
        """End the zygote now, its imports done or not (slots it forked live on until their pipes close)."""
        self.control.close()
        self.process.kill()
        self.process.wait()


_zygote: SlotZygote | None = None


def start_preloading(modules: Sequence[str], jobs_dir: Path | None) -> SlotZygote:
    """The slot zygote, started now, importing ``modules`` (its output in ``jobs_dir/preload.log``, or
    discarded), unless one that imports the same runs already; slots started later are forked from it with
    the modules loaded. A zygote it replaces ends with the last of its slots."""
    global _zygote
    if _zygote is None or not _zygote.alive() or _zygote.modules != tuple(modules):
        if _zygote is not None:
            _zygote.control.close()
        _zygote = SlotZygote(modules, None if jobs_dir is None else jobs_dir / "preload.log")
    return _zygote


def current_zygote(jobs_dir: Path) -> SlotZygote:
    """The running slot zygote, or a new one importing what the last one did."""
    return start_preloading(_zygote.modules if _zygote is not None else (), jobs_dir)


def end_zygote() -> None:
    """End the slot zygote now, if one runs."""
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None
