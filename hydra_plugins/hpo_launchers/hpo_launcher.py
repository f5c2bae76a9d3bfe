"""Hydra only instantiates plugin classes defined under ``hydra_plugins``, so these subclass the real ones."""

from __future__ import annotations

import launchers.config  # noqa: F401  (registers hydra/launcher=hpo)
from launchers.launcher import HPOLauncher as _HPOLauncher


class HPOLauncher(_HPOLauncher):
    """hpo's launcher, as Hydra discovers it (``hydra/launcher=hpo``)."""
