"""What hpo's own processes install process-wide, and only they: a library never changes its host.

The entry points (``python -m hpo``, a local slot's process, a RunPod worker) call ``own_process`` first
thing; a Hydra app of its own that uses hpo's launcher or sweeper keeps its signals, its SQLite settings
and its garbage collector as it set them.
"""

from __future__ import annotations

import os
import signal

from hpo.core import collector, interrupts
from hpo.core.sqlite_wal import commit_through_write_ahead_log


def own_process(stop_on_signals: bool = True) -> None:
    """Make SIGTERM stop this process the way Ctrl-C does (with ``stop_on_signals``), put its SQLite stores
    through a write-ahead log, let it freeze its set-up out of the garbage collector, and keep MLflow's
    download progress bars (a report reading each trial's architecture) out of its output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if stop_on_signals:
        interrupts.stop_on(signal.SIGTERM, signal.SIGINT)
    commit_through_write_ahead_log()
    collector.enable_freeze()
