"""The files through which the driver and a trial's SLURM job talk on the shared file system: the trial's
last finished epoch out, a prune in.

Both live in the trial's folder, beside its jobs' folders, so a job resubmitted for the trial reads the same
prune. The job writes its progress at each epoch end, and a thread of the job looks for the prune every
``PRUNE_CHECK_S``; its trial then stops at its next batch (``hpo.core.trial_channel``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from hpo.core import trial_channel

PROGRESS_FILE = "progress.json"
PRUNE_FILE = "prune"
# how often a job looks for its trial's prune file
PRUNE_CHECK_S = 1.0


class TrialFiles:
    """The progress and prune files of the trial whose folder is ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.progress_path = folder / PROGRESS_FILE
        self.prune_path = folder / PRUNE_FILE

    def report(self, progress: trial_channel.Progress) -> None:
        """Write one epoch's progress, whole (a reader never sees it half-written)."""
        partial = self.progress_path.with_suffix(".tmp")
        partial.write_text(json.dumps(progress))
        os.replace(partial, self.progress_path)

    def watch(self) -> None:
        """Prune this process's trial once the prune file appears (checked by a daemon thread)."""

        def look() -> None:
            while not self.prune_path.exists():
                time.sleep(PRUNE_CHECK_S)
            trial_channel.prune()

        threading.Thread(target=look, name="prune-watch", daemon=True).start()

    def progress(self) -> trial_channel.Progress | None:
        """The last progress the trial wrote, or None before its first epoch."""
        try:
            progress = json.loads(self.progress_path.read_text())
        except (OSError, ValueError):
            return None
        return progress if isinstance(progress, dict) else None

    def prune(self) -> None:
        """Ask the trial's running job (or the next job of it, as it starts) to stop it as pruned."""
        self.prune_path.touch()
