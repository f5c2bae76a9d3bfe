"""Fault injection: refused or lost API answers, brownouts, killed workers, timeouts, throttles."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Faults:
    """The faults to inject; job faults are budgets that count down as jobs are hit."""

    error_rate: float = 0.0  # fraction of client API requests answered 429 or 503
    seed: int | None = None  # seeds the draws of error_rate (None: unseeded)
    status_delay_s: float = 0.0  # added before every /status answer
    kill_worker_jobs: int = 0  # the next K jobs in progress get their worker SIGKILLed
    kill_after_s: float = 0.5  # ... this long after being taken, or at their first progress update
    timeout_jobs: int = 0  # the next K jobs taken are declared TIMED_OUT
    timeout_after_s: float = 0.5  # ... this long after being taken
    running_state: bool = False  # /status shows IN_PROGRESS jobs as RUNNING (RunPod documents both)
    brownout_s: float = 0.0  # from when set, this long: client and REST requests get 503 or a dropped hang
    hang_s: float = 12.0  # how long a hung answer (brownout, lost answer) hangs before the drop
    lost_answers: int = 0  # the next K /run requests create their job, then hang and drop the answer
    throttled_workers: int = 0  # the next K workers the scaler wants stay THROTTLED until this is 0 again


_RATES = {"error_rate"}
_COUNTS = {"kill_worker_jobs", "timeout_jobs", "lost_answers", "throttled_workers"}
_DELAYS = {"status_delay_s", "kill_after_s", "timeout_after_s", "brownout_s", "hang_s"}
_FLAGS = {"running_state"}


class FaultInjector:
    """Draws the injected faults and counts what it injected."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = Faults()
        self._rng = random.Random()
        self.injected = {
            "429": 0, "503": 0, "killed_workers": 0, "timed_out_jobs": 0, "rate_limited": 0,
            "brownout_503": 0, "brownout_hangs": 0, "lost_answers": 0, "throttled_workers": 0,
        }  # fmt: skip
        self._brownout_until = 0.0
        self._brownout_hang = False
        self._throttled = 0
        self.update(asdict(faults or Faults()))

    def update(self, changes: Mapping[str, Any]) -> None:
        """Change some faults, validating every value first; ValueError names the bad one."""
        known = {f.name for f in fields(Faults)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            checked[name] = _check(name, value)
        for name, value in checked.items():
            setattr(self.faults, name, value)
        if "seed" in checked:
            self._rng = random.Random(checked["seed"])
        if "brownout_s" in checked:
            self._brownout_until = time.monotonic() + checked["brownout_s"]
        if checked.get("throttled_workers") == 0:
            self._throttled = 0

    def api_error(self) -> int | None:
        """The status to refuse this client request with (429 or 503), or None to serve it."""
        if self.faults.error_rate <= 0 or self._rng.random() >= self.faults.error_rate:
            return None
        status = self._rng.choice((429, 503))
        self.injected[str(status)] += 1
        return status

    def brownout(self) -> str | None:
        """During a brownout, ``"503"`` or ``"hang"`` (alternately) for this request; None otherwise."""
        if time.monotonic() >= self._brownout_until:
            return None
        self._brownout_hang = not self._brownout_hang
        kind = "hang" if self._brownout_hang else "503"
        self.injected[f"brownout_{'hangs' if kind == 'hang' else '503'}"] += 1
        return kind

    def claim_lost_answer(self) -> bool:
        """Whether this /run's answer is lost after its job was created."""
        if self.faults.lost_answers <= 0:
            return False
        self.faults.lost_answers -= 1
        self.injected["lost_answers"] += 1
        return True

    def claim_throttle(self) -> bool:
        """Whether the worker the scaler just wants is THROTTLED (until throttled_workers is set to 0)."""
        if self._throttled >= self.faults.throttled_workers:
            return False
        self._throttled += 1
        self.injected["throttled_workers"] += 1
        return True

    @property
    def throttling(self) -> bool:
        return self.faults.throttled_workers > 0

    def claim_kill(self) -> bool:
        """Whether the job just taken is one whose worker gets killed."""
        if self.faults.kill_worker_jobs <= 0:
            return False
        self.faults.kill_worker_jobs -= 1
        self.injected["killed_workers"] += 1
        return True

    def claim_timeout(self) -> bool:
        """Whether the job just taken is one that times out."""
        if self.faults.timeout_jobs <= 0:
            return False
        self.faults.timeout_jobs -= 1
        self.injected["timed_out_jobs"] += 1
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"faults": asdict(self.faults), "injected": dict(self.injected)}


def _check(name: str, value: Any) -> Any:
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed must be an integer or null, not {value!r}")
        return value
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if name in _RATES and not 0 <= value <= 1:
        raise ValueError(f"{name} must be between 0 and 1, not {value}")
    if name in _COUNTS:
        if value < 0 or int(value) != value:
            raise ValueError(f"{name} must be a whole number >= 0, not {value}")
        return int(value)
    if name in _DELAYS and value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")
    return float(value)
