"""Every use of a library's private code, in one place: Hydra's config loader and hydra-optuna-sweeper's
search-space parsing, which have no public API for what hpo needs.

``tests/hpo/core/test_private_apis.py`` pins what is used here, so a library release that changes it fails
there, naming the library and its version. hydra-optuna-sweeper builds Optuna's pre-3.0 distribution classes
(deprecated, gone in Optuna 6); they are converted here to ``FloatDistribution``, ``IntDistribution`` and
``CategoricalDistribution`` as soon as the plugin returns them, so no sweep raises their FutureWarning.

Libraries are imported inside the functions: ``hpo.core`` stays light for the processes that never call them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.core.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from hydra.core.override_parser.types import Override

    # the plugin's sweeper, whose settings hpo's own sweeper reads (``OptunaSweeper.sweeper``)
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl as SweeperImpl
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

# Optuna's message for each pre-3.0 class ("UniformDistribution has been deprecated in v3.0.0. ...")
_LEGACY_WARNING = r"\w+Distribution has been deprecated"


# --- Hydra (hydra-core) ---------------------------------------------------------------------------------


def overrides_dirname(
    overrides: Sequence[Override], *, kv_sep: str, item_sep: str, exclude_keys: Sequence[str]
) -> str:
    """``hydra.job.override_dirname`` for ``overrides``, computed by the function Hydra's own compose uses,
    so that a config copied from a template names its job exactly as a full compose would."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(
        overrides=list(overrides), exclude_keys=list(exclude_keys), item_sep=item_sep, kv_sep=kv_sep
    )


def group_exists(config_loader: Any, name: str) -> bool:
    """Whether ``name`` is a config group, asked of the repository of Hydra's config loader (the public
    ``ConfigLoader`` interface only lists groups, each call rebuilding a repository)."""
    return bool(config_loader.repository.group_exists(name))


# --- hydra-optuna-sweeper -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedSpace:
    """A sweep's search space, as hydra-optuna-sweeper reads it, in Optuna's current distribution classes."""

    # hydra.sweeper.params as ``key=expression``, then the command line's overrides
    expressions: list[str]
    # what Optuna samples: the sweep expressions and the deprecated hydra.sweeper.search_space, if any
    distributions: dict[str, BaseDistribution]
    # plain ``key=value`` overrides every trial carries
    fixed: dict[str, Any]
    # the deprecated search_space's entries as ``name=repr``, in the plugin's own classes, for study names
    configured: list[str]


def parse_search_space(impl: SweeperImpl, arguments: Sequence[str]) -> ParsedSpace:
    """``hydra.sweeper.params`` (or the deprecated ``search_space``) and the command line's ``arguments``,
    parsed by the plugin's own helpers so that its grammar is hpo's; a malformed expression raises here, and
    bounds Optuna refuses raise a ``ConfigError`` naming their expression."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    with _legacy_classes_quiet():
        impl._process_searchspace_config()
        expressions = [*impl._parse_sweeper_params_config(), *arguments]
        try:
            parsed, fixed = create_params_from_overrides(expressions)
        except ValueError:
            # Optuna refused a distribution's bounds (reversed, or 0 under log): name the expression
            for expression in expressions:
                try:
                    create_params_from_overrides([expression])
                except ValueError as exc:
                    raise ConfigError(f"bad search space '{expression}': {exc}") from None
            raise
    configured = dict(impl.search_space_distributions or {})
    distributions = {name: current(d) for name, d in {**configured, **parsed}.items() if name not in fixed}
    return ParsedSpace(
        expressions, distributions, dict(fixed), sorted(f"{k}={v!r}" for k, v in configured.items())
    )


def search_distributions(expressions: Sequence[str]) -> dict[str, BaseDistribution]:
    """What Optuna samples for ``key=expression`` search-space entries, in its current classes, as
    hydra-optuna-sweeper parses them (plain ``key=value`` entries are left out)."""
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    with _legacy_classes_quiet():
        parsed, fixed = create_params_from_overrides(list(expressions))
    return {name: current(d) for name, d in parsed.items() if name not in fixed}


def trial_overrides(
    impl: SweeperImpl, trial: optuna.Trial, distributions: dict[str, BaseDistribution]
) -> list[str]:
    """The trial's ``key=value`` overrides, suggesting each of ``distributions`` and running the configured
    ``custom_search_space`` exactly as the plugin does for its own trials."""
    (overrides,) = impl._configure_trials([trial], distributions, {})
    return list(overrides)


def directions(impl: SweeperImpl) -> list[str]:
    """The study's directions (``minimize``/``maximize``), from the sweeper's ``direction`` setting."""
    return list(impl._get_directions())


def grid_choices(distribution: BaseDistribution) -> Sequence[Any]:
    """The points Optuna's GridSampler tries for ``distribution``, as the plugin lists them for its own
    classes (a range's points from ``low`` by ``step``, leaving ``high`` out)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices
    if isinstance(distribution, IntDistribution) and not distribution.log:
        count = (distribution.high - distribution.low) // distribution.step
        return [distribution.low + i * distribution.step for i in range(count)]
    if isinstance(distribution, FloatDistribution) and distribution.step is not None and not distribution.log:
        count = int((distribution.high - distribution.low) // distribution.step)
        return [distribution.low + i * distribution.step for i in range(count)]
    raise ValueError("GridSampler only supports discrete distributions.")


def current(distribution: BaseDistribution) -> BaseDistribution:
    """``distribution`` in Optuna's current class: a deprecated subclass of ``FloatDistribution`` or
    ``IntDistribution`` becomes its base with the same bounds, ``log`` and ``step``."""
    from optuna.distributions import FloatDistribution, IntDistribution

    d = distribution
    if isinstance(d, FloatDistribution) and type(d) is not FloatDistribution:
        return FloatDistribution(d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, IntDistribution) and type(d) is not IntDistribution:
        return IntDistribution(d.low, d.high, log=d.log, step=d.step)
    return d


def as_stored(
    distributions: dict[str, BaseDistribution], trials: Iterable[FrozenTrial]
) -> dict[str, BaseDistribution]:
    """``distributions``, each given the deprecated class the study's ``trials`` already store for it.

    A study begun before hpo converted the plugin's classes holds them, and Optuna refuses a parameter
    whose class changes ("Cannot set different distribution kind"), so such a study resumes as it began.
    """
    kept = dict(distributions)
    unseen = set(kept)
    for trial in trials:
        for name in unseen & trial.distributions.keys():
            unseen.discard(name)
            stored = trial.distributions[name]
            legacy = _legacy(kept[name]) if type(stored) is not type(kept[name]) else None
            if legacy is not None and type(legacy) is type(stored):
                kept[name] = legacy
        if not unseen:
            break
    return kept


def _legacy(distribution: BaseDistribution) -> BaseDistribution | None:
    """``distribution`` in the pre-3.0 class the plugin builds for it; None where there is none."""
    import optuna.distributions as od

    d = distribution
    args: tuple[Any, ...]
    if isinstance(d, od.FloatDistribution):
        if d.log:
            name, args = "LogUniformDistribution", (d.low, d.high)
        elif d.step is not None:
            name, args = "DiscreteUniformDistribution", (d.low, d.high, d.step)
        else:
            name, args = "UniformDistribution", (d.low, d.high)
    elif isinstance(d, od.IntDistribution):
        if d.log:
            name, args = "IntLogUniformDistribution", (d.low, d.high)
        else:
            name, args = "IntUniformDistribution", (d.low, d.high, d.step)
    else:
        return None
    cls = getattr(od, name, None)
    if cls is None:
        return None
    with _legacy_classes_quiet():
        return cls(*args)


@contextmanager
def _legacy_classes_quiet() -> Iterator[None]:
    """Silences Optuna's FutureWarning for its pre-3.0 distribution classes (only that warning) while the
    plugin builds them: they are converted before anything else sees them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LEGACY_WARNING, category=FutureWarning)
        yield
