"""What ``python -m hpo`` does before its own imports: a sweep's local slots' libraries start loading, in
the process the slots are forked from (``launchers.preloading``), while the driver imports Hydra, Optuna
and MLflow and composes its config. This module and what it imports use the standard library alone."""

from __future__ import annotations

from hpo.core.names import TRIAL_LIBRARIES
from hpo.driver.imports import leave_out_unused_libraries
from launchers.preloading import start_preloading


def sweeping(argv: list[str]) -> bool:
    """Whether the command runs a sweep, whose trials train in processes of their own (without ``-m`` the
    one trial trains in this process, and needs every library its dataset's loader may use)."""
    return any(arg in ("-m", "--multirun") or arg.replace(" ", "") == "hydra.mode=MULTIRUN" for arg in argv)


def start_for_sweep(argv: list[str]) -> None:
    """For a sweep, keep the driver's unused libraries out and start the slots' zygote (once: a second call
    keeps it). The launcher keeps it for a local sweep that preloads the same modules, else ends it."""
    if sweeping(argv):
        leave_out_unused_libraries()
        start_preloading([TRIAL_LIBRARIES], None)
