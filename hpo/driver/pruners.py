"""The ``hydra/sweeper/pruner`` options: Optuna's pruners, with defaults for trials of a few epochs.

A trial reports its objective after every epoch (step 1 is the first epoch); the driver asks the pruner
whether to stop it there (see ``hpo.driver.trial_loop``). ``none`` is Optuna's ``NopPruner``: no trial
reports or stops early. Hydra gives the sweeper each option as a partial, built by ``build`` so that an
argument Optuna refuses is one line naming the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.core.errors import ConfigError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


@dataclass
class PrunerConf:
    """No pruning: every trial runs all its epochs."""

    _target_: str = "optuna.pruners.NopPruner"
    _partial_: bool = True


@dataclass
class MedianPrunerConf(PrunerConf):
    """Stop a trial whose best objective so far is worse than the median of earlier trials at that epoch."""

    _target_: str = "optuna.pruners.MedianPruner"
    # trials that run to the end before any is pruned
    n_startup_trials: int = 3
    # epochs a trial runs before it may be pruned
    n_warmup_steps: int = 2
    # epochs between two pruning checks of a trial
    interval_steps: int = 1
    # trials that must have reported an epoch before a trial is judged at it
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf(MedianPrunerConf):
    """Stop a trial whose best objective so far is not among the best ``percentile`` of trials at that
    epoch (50.0 is the median pruner)."""

    _target_: str = "optuna.pruners.PercentilePruner"
    # the share of trials (0 to 100) kept at each epoch: 75.0 stops those in the worst quarter
    percentile: float = 75.0


@dataclass
class HalvingConf(PrunerConf):
    """What successive halving and Hyperband share: rungs at epochs min_resource * reduction_factor ** k,
    where only the best 1 / reduction_factor of the trials that reached the rung go on."""

    # epochs before the first rung ("auto", successive halving only: from the first trial that completes)
    min_resource: Any = 1
    # how much each rung thins the trials out, and how much further apart the next rung is
    reduction_factor: int = 3
    # trials that must reach a rung before any is promoted past it
    bootstrap_count: int = 0


@dataclass
class SuccessiveHalvingPrunerConf(HalvingConf):
    """Asynchronous successive halving: every trial starts at the same first rung."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    # rungs skipped before the first decision
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConf(HalvingConf):
    """Hyperband: successive halving in several brackets with different first rungs, so that a trial slow
    to start is not always judged after its first epoch."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    # a trial's epochs ("auto": the last epoch of the first trial that completes)
    max_resource: Any = "${trainer.max_epochs}"


# hydra/sweeper/pruner's options, registered with hpo's sweeper
OPTIONS: dict[str, type[PrunerConf]] = {
    "none": PrunerConf,
    "median": MedianPrunerConf,
    "percentile": PercentilePrunerConf,
    "successive_halving": SuccessiveHalvingPrunerConf,
    "hyperband": HyperbandPrunerConf,
}


def build(pruner: Any) -> BasePruner | None:
    """The study's pruner from an option's partial (None, or ``none``'s: no pruning)."""
    from optuna.pruners import HyperbandPruner, NopPruner

    if pruner is None:
        return None
    try:
        built = pruner()
        if isinstance(built, HyperbandPruner):
            _check_hyperband(**pruner.keywords)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.sweeper.pruner: {exc}") from None
    return None if isinstance(built, NopPruner) else built


def _check_hyperband(
    min_resource: int = 1, max_resource: Any = "auto", reduction_factor: int = 3, bootstrap_count: int = 0
) -> None:
    """Refuse the arguments Optuna's HyperbandPruner refuses only once trials report, as it builds its
    brackets' successive halving pruners."""
    from optuna.pruners import SuccessiveHalvingPruner

    SuccessiveHalvingPruner(min_resource, reduction_factor, 0, bootstrap_count)
    if max_resource != "auto" and int(max_resource) < int(min_resource):
        raise ValueError(f"max_resource={max_resource} is below min_resource={min_resource}")
