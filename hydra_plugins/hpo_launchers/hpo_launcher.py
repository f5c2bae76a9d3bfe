"""Hydra only instantiates plugin classes defined under ``hydra_plugins``, so these subclass the real ones.

This is where the launcher meets hpo's MLflow records: a remote backend records each trial's run with them.
"""

from __future__ import annotations

import launchers.config  # noqa: F401  (registers hydra/launcher=hpo)
from hpo.records.remote_trial import TrialRecord
from launchers.launcher import HPOLauncher as _HPOLauncher


class HPOLauncher(_HPOLauncher):
    """hpo's launcher, as Hydra discovers it (``hydra/launcher=hpo``)."""

    trial_records = TrialRecord
