"""What a running sweep shows: a live panel on a terminal, progress log lines otherwise, and an event log.

The panel is drawn with rich; while it is up, log lines (``#n start: ...``, ``#n done in ...``) scroll
above it. ``events.jsonl`` in the sweep directory records when each trial was submitted, pruned and
finished, and when the sweep's study opened.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"


@dataclass
class TrialView:
    """A running trial as the view shows it."""

    number: int
    elapsed_s: float
    # epoch, epochs and objective (or val_accuracy), from backends whose handles report progress
    progress: dict[str, Any] | None = None
    retries: int | None = None
    # the pruner gave up on it: it stops at its next batch
    pruning: bool = False


@dataclass
class Snapshot:
    """The sweep's state at one moment."""

    n_trials: int
    queued: int
    completed: int
    failed: int
    best: float | None
    elapsed_s: float
    eta_s: float | None
    running: list[TrialView] = field(default_factory=list)
    # finished trials the pruner stopped early
    pruned: int = 0


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def summary(snap: Snapshot, objective: str) -> str:
    """One line: counts, best value, elapsed time and ETA."""
    best = f"best {objective}={snap.best:.4f}" if snap.best is not None else "no result yet"
    eta = f", ETA ~{duration(snap.eta_s)}" if snap.eta_s is not None else ""
    pruned = f"{snap.pruned} pruned, " if snap.pruned else ""
    return (
        f"{snap.completed + snap.pruned + snap.failed} of {snap.n_trials} trials done ({snap.completed} "
        f"completed, {pruned}{snap.failed} failed), {len(snap.running)} running, {snap.queued} queued; "
        f"{best}; elapsed {duration(snap.elapsed_s)}{eta}"
    )


def _trial_line(trial: TrialView, objective: str) -> str:
    parts = [f"#{trial.number}", duration(trial.elapsed_s)]
    progress = trial.progress or {}
    if progress.get("epoch") is not None:
        parts.append(f"epoch {progress['epoch']}/{progress.get('epochs', '?')}")
    shown = [(objective, progress.get("objective")), ("val_accuracy", progress.get("val_accuracy"))]
    label, value = next(((k, v) for k, v in shown if v is not None), ("", None))
    if value is not None:
        parts.append(f"{label} {float(value):.4f}")
    if trial.retries:
        parts.append(f"retried {trial.retries}x")
    if trial.pruning:
        parts.append("pruned, stopping")
    return "  ".join(parts)


class SweepView:
    """The console view of a sweep: a rich live panel when stdout is a terminal, else a progress line per
    finished trial."""

    def __init__(self, objective: str, live: bool | None = None) -> None:
        self.objective = objective
        self.live = sys.stdout.isatty() if live is None else live
        self._live: Any = None
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> SweepView:
        if self.live:
            from rich.live import Live

            streams = (sys.stdout, sys.stderr)
            self._live = Live("", refresh_per_second=4, redirect_stdout=True, redirect_stderr=True)
            self._live.start()
            proxies = {id(streams[0]): sys.stdout, id(streams[1]): sys.stderr}
            for handler in logging.getLogger().handlers:
                if type(handler) is logging.StreamHandler and id(handler.stream) in proxies:
                    self._swapped.append((handler, handler.setStream(proxies[id(handler.stream)])))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handler, stream in self._swapped:
            handler.setStream(stream)
        self._swapped.clear()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, snap: Snapshot) -> None:
        """Redraw the panel (on a terminal)."""
        if self._live is not None:
            self._live.update(self._render(snap))

    def trial_finished(self, snap: Snapshot) -> None:
        """Log the sweep's progress (when there is no panel to show it)."""
        if self._live is None:
            log.info(f"progress: {summary(snap, self.objective)}")
        else:
            self._live.update(self._render(snap))

    def _render(self, snap: Snapshot) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        lines = [Text(_trial_line(t, self.objective)) for t in sorted(snap.running, key=lambda t: t.number)]
        return Panel(
            Group(Text(summary(snap, self.objective), style="bold"), *lines), title="hpo sweep", expand=False
        )


class EventLog:
    """Appends one JSON object per line to ``events.jsonl``: what happened to which trial, and when."""

    def __init__(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.path = sweep_dir / EVENTS_FILE

    def write(self, event: str, trial: int, **fields: Any) -> None:
        self._append({"t": time.time(), "event": event, "trial": trial, **fields})

    def mark(self, event: str) -> None:
        """Record a moment of the whole sweep, with no trial (``study``: its study is open)."""
        self._append({"t": time.time(), "event": event})

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
