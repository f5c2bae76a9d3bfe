"""Hydra only instantiates plugin classes defined under ``hydra_plugins``, so this subclasses the real one."""

from __future__ import annotations

from hpo.driver.sweeper import HPOSweeper as _HPOSweeper


class HPOSweeper(_HPOSweeper):
    """hpo's sweeper, as Hydra discovers it (``hydra/sweeper=hpo``)."""
