"""The garbage collector in long-lived sweep processes: what their set-up leaves is frozen out of it.

A driver imports MLflow, SQLAlchemy, Optuna and Hydra before its first trial: several hundred thousand
objects that live as long as the process. CPython's full collections walk every one of them, stalling
dispatch while they run. Frozen, those objects are left out of every later collection, which then walks
only what the sweep itself creates.
"""

from __future__ import annotations

import gc

_enabled = False
_frozen = False


def enable_freeze() -> None:
    """Let ``freeze_setup`` act in this process: called by hpo's own entry points only, so that a program
    that merely uses hpo's launcher or sweeper keeps its collector as it set it."""
    global _enabled
    _enabled = True


def freeze_before_forks() -> None:
    """Freeze every object alive now, uncollected: a fork template (the slot zygote) calls it once its
    imports are done, so that no child's collection walks what it inherited. A walk writes to each object
    it visits, which would copy every page the template's imports fill into each child; collecting first
    would only add to the template's own start."""
    gc.freeze()


def freeze_setup() -> None:
    """Collect the garbage the set-up left, then freeze every object alive now; once per process, and only
    where the entry point called ``enable_freeze``.

    Call it once the process has imported and opened what it keeps for its lifetime. Frozen objects are
    still freed when their last reference goes; only a cycle among them that becomes garbage stays.
    """
    global _frozen
    if _frozen or not _enabled:
        return
    gc.collect()
    gc.freeze()
    _frozen = True
