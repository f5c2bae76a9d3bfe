"""The sweep's search space, parsed by hydra-optuna-sweeper's own helpers so that its grammar is ours."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
    from optuna.distributions import BaseDistribution

log = logging.getLogger(__name__)

# overrides that change how trials run or are recorded, not what they compute: not part of a study's identity
_NOT_IDENTITY = ("launcher.", "mlflow.", "hydra.")


@dataclass
class SearchSpace:
    """The distributions Optuna samples and the fixed overrides every trial carries."""

    impl: OptunaSweeperImpl
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    # the sweeper params and command-line overrides it was parsed from
    expressions: list[str]

    @classmethod
    def parse(cls, impl: OptunaSweeperImpl, arguments: list[str]) -> SearchSpace:
        """``hydra.sweeper.params`` (or the deprecated ``search_space``) and the command line's overrides,
        exactly as hydra-optuna-sweeper reads them; a malformed expression raises here, before any run."""
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        impl._process_searchspace_config()
        expressions = [*impl._parse_sweeper_params_config(), *arguments]
        parsed, fixed = create_params_from_overrides(expressions)
        distributions = dict(impl.search_space_distributions or {})
        distributions.update(parsed)
        for name in fixed:
            distributions.pop(name, None)
        return cls(impl, distributions, fixed, expressions)

    def overrides(self, trial: optuna.Trial) -> list[str]:
        """The trial's overrides, suggesting whatever it has not been given yet (a re-run trial keeps its
        values: Optuna returns a parameter's stored value when it is suggested again).

        The fixed overrides are appended here rather than handed to ``_configure_trials``, which would store
        each as a user attribute of every trial: one storage write apiece, the same in every trial.
        """
        (overrides,) = self.impl._configure_trials([trial], self.distributions, {})
        return [*overrides, *(f"{name}={value}" for name, value in self.fixed.items())]

    def identity(self, *extra: str) -> str:
        """Eight hex digits naming this space and the overrides that change a trial's result."""
        kept = sorted(e for e in self.expressions if not e.lstrip("+~").startswith(_NOT_IDENTITY))
        space = sorted(f"{k}={v!r}" for k, v in (self.impl.search_space_distributions or {}).items())
        custom = getattr(self.impl.custom_search_space_extender, "func", None)
        custom_name = f"{custom.__module__}.{custom.__qualname__}" if custom else ""
        text = "\n".join([*kept, *space, f"custom={custom_name}", *extra])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def grid_sampler(self, n_trials: int) -> tuple[Any, int]:
        """The configured sampler, built over the grid when it is Optuna's GridSampler, and ``n_trials``
        capped at the grid's size."""
        import optuna

        sampler = self.impl.sampler
        if not (isinstance(sampler, functools.partial) and sampler.func == optuna.samplers.GridSampler):
            return sampler, n_trials
        grid = {name: self.impl._to_grid_sampler_choices(d) for name, d in self.distributions.items()}
        size = math.prod(len(v) for v in grid.values())
        if size < n_trials:
            log.info(f"GridSampler: {size} grid points, so n_trials={size}")
        return sampler(grid), min(n_trials, size)
