"""The trial runs a process closed, handed from the trial that closed one to the local slot that ran it.

A local slot runs trials in its own process and sends each closed run back with the job's result, so the
driver knows the run and its Optuna state without searching MLflow for it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ClosedRun:
    """A trial run that a job closed, and the Optuna state it tagged the run with (None: it tagged none)."""

    run_id: str
    optuna_state: str | None


# the trial runs this process closed since they were last taken (a local slot takes them after each job);
# a job closes one, and a process that never takes them (a RunPod worker) keeps only the last few
_closed_runs: deque[ClosedRun] = deque(maxlen=8)


def note_closed_run(run_id: str, optuna_state: str | None) -> None:
    """Record that this process closed trial run ``run_id``, tagged with ``optuna_state``."""
    _closed_runs.append(ClosedRun(run_id, optuna_state))


def take_closed_runs() -> list[ClosedRun]:
    """The trial runs closed since the last call, oldest first."""
    taken = list(_closed_runs)
    _closed_runs.clear()
    return taken
