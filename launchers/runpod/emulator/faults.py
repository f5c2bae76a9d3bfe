"""Fault injection: refused API requests, slow status answers, killed workers and timed-out jobs."""

from __future__ import annotations

import random
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


_RATES = {"error_rate"}
_COUNTS = {"kill_worker_jobs", "timeout_jobs"}
_DELAYS = {"status_delay_s", "kill_after_s", "timeout_after_s"}


class FaultInjector:
    """Draws the injected faults and counts what it injected."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = Faults()
        self._rng = random.Random()
        self.injected = {"429": 0, "503": 0, "killed_workers": 0, "timed_out_jobs": 0}
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

    def api_error(self) -> int | None:
        """The status to refuse this client request with (429 or 503), or None to serve it."""
        if self.faults.error_rate <= 0 or self._rng.random() >= self.faults.error_rate:
            return None
        status = self._rng.choice((429, 503))
        self.injected[str(status)] += 1
        return status

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
