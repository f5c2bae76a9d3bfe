"""Signals that stop this process the way Ctrl-C does, and whether one has come.

An interrupt can surface as another exception: TensorFlow turns a KeyboardInterrupt raised while it traces
a layer into a TypeError. Code that must tell a stopped trial from a failed one asks ``received()``
rather than trusting the exception's type.
"""

from __future__ import annotations

import signal
from typing import Any

_received: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on(*signums: int) -> None:
    """Make each of ``signums`` raise KeyboardInterrupt, as Ctrl-C does, and remember that it came."""
    for signum in signums:
        signal.signal(signum, _interrupt)


def received() -> bool:
    """Whether one of the signals given to ``stop_on`` has come."""
    return bool(_received)
