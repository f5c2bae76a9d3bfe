"""The sweep's search space, parsed by hydra-optuna-sweeper's own helpers so that its grammar is ours (through
``hpo.core.private_apis``, which holds every use of the plugin's private code)."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.core import private_apis

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from hpo.core.private_apis import SweeperImpl

log = logging.getLogger(__name__)

# overrides that change how trials run or are recorded, not what they compute: not part of a study's identity
_NOT_IDENTITY = ("launcher.", "mlflow.", "hydra.")


@dataclass
class SearchSpace:
    """The distributions Optuna samples and the fixed overrides every trial carries."""

    impl: SweeperImpl
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    # the sweeper params and command-line overrides it was parsed from
    expressions: list[str]
    # the deprecated hydra.sweeper.search_space's entries as the plugin builds them, for the study's name
    configured: list[str] = field(default_factory=list)
    # whether the distributions were matched to the classes the study stores (see ``overrides``)
    _matched: bool = field(default=False, init=False, repr=False)

    @classmethod
    def parse(cls, impl: SweeperImpl, arguments: list[str]) -> SearchSpace:
        """``hydra.sweeper.params`` (or the deprecated ``search_space``) and the command line's overrides,
        exactly as hydra-optuna-sweeper reads them; a malformed expression raises here, before any run."""
        parsed = private_apis.parse_search_space(impl, arguments)
        return cls(impl, parsed.distributions, parsed.fixed, parsed.expressions, parsed.configured)

    def overrides(self, trial: optuna.Trial) -> list[str]:
        """The trial's overrides, suggesting whatever it has not been given yet (a re-run trial keeps its
        values: Optuna returns a parameter's stored value when it is suggested again).

        The fixed overrides are appended here rather than handed to the plugin, which would store each as a
        user attribute of every trial: one storage write apiece, the same in every trial. The first trial
        matches the distributions to the classes the study stores, so that a study begun before hpo
        converted the plugin's deprecated classes resumes.
        """
        if not self._matched:
            stored = trial.study.get_trials(deepcopy=False)
            self.distributions = private_apis.as_stored(self.distributions, stored)
            self._matched = True
        overrides = private_apis.trial_overrides(self.impl, trial, self.distributions)
        return [*overrides, *(f"{name}={value}" for name, value in self.fixed.items())]

    def searches(self, section: str) -> bool:
        """Whether a searched parameter lies in config ``section`` or chooses its option (``dataset``)."""
        return any(name == section or name.startswith(f"{section}.") for name in self.distributions)

    def probes(self) -> list[list[str]]:
        """Trial overrides that between them give each parameter every choice and both bounds it can be
        sampled at, in as few trials as that takes (the most choices of one parameter): the sweeper checks
        their configs before the first trial, so a value no trial could run with fails the sweep at once."""
        values = {name: v for name, d in self.distributions.items() if (v := _extremes(d))}
        fixed = [f"{name}={value}" for name, value in self.fixed.items()]
        rounds = max((len(v) for v in values.values()), default=1)
        return [[*(f"{n}={v[i % len(v)]}" for n, v in values.items()), *fixed] for i in range(rounds)]

    def identity(self, *extra: str) -> str:
        """Eight hex digits naming this space and the overrides that change a trial's result."""
        kept = sorted(e for e in self.expressions if not e.lstrip("+~").startswith(_NOT_IDENTITY))
        custom = getattr(self.impl.custom_search_space_extender, "func", None)
        custom_name = f"{custom.__module__}.{custom.__qualname__}" if custom else ""
        text = "\n".join([*kept, *self.configured, f"custom={custom_name}", *extra])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def grid_sampler(self, n_trials: int) -> tuple[Any, int]:
        """The configured sampler, built over the grid when it is Optuna's GridSampler, and ``n_trials``
        capped at the grid's size."""
        import optuna

        sampler = self.impl.sampler
        if not (isinstance(sampler, functools.partial) and sampler.func == optuna.samplers.GridSampler):
            return sampler, n_trials
        grid = {name: private_apis.grid_choices(d) for name, d in self.distributions.items()}
        size = math.prod(len(v) for v in grid.values())
        if size < n_trials:
            log.info(f"GridSampler: {size} grid points, so n_trials={size}")
        return sampler(grid), min(n_trials, size)


def _extremes(distribution: BaseDistribution) -> list[Any]:
    """Every choice of a categorical distribution, else the lowest and highest value it can sample."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, FloatDistribution | IntDistribution):
        return [distribution.low, distribution.high]
    return []
