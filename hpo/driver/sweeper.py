"""hpo's sweeper: an asynchronous, resumable Optuna sweep, framed by a validated config and an MLflow run.

It reads the same ``hydra.sweeper`` settings and search-space grammar as hydra-optuna-sweeper (through that
plugin's own parsing), but instead of launching ``n_jobs`` trials as a batch and waiting for the slowest it
keeps ``launcher.workers`` trials in flight (see ``hpo.driver.trial_loop``; ``n_jobs`` is not used) and keeps
the study in a storage, so re-running the same command resumes it (see ``hpo.driver.study``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf, SamplerConfig
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import MISSING, DictConfig
from omegaconf.errors import OmegaConfBaseException

from hpo.core import private_apis
from hpo.core.errors import ConfigError, HPOError
from hpo.core.failures import one_line
from hpo.core.schema import validate
from hpo.core.store import check_store, resolve_tracking_uri
from hpo.driver import pruners
from hpo.driver.sweep_run import Sweep

if TYPE_CHECKING:
    import optuna

    from hpo.driver.search_space import SearchSpace
    from hpo.driver.study import StudyState
    from launchers.launcher import HPOLauncher

log = logging.getLogger(__name__)


@dataclass
class HPOSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.hpo_launchers.hpo_sweeper.HPOSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    # Optuna's pruner, which stops trials whose epochs fall behind: hydra/sweeper/pruner=median|percentile|
    # successive_halving|hyperband|none (hpo.driver.pruners)
    pruner: Any = MISSING


@dataclass
class TPEAsyncSamplerConf(SamplerConfig):
    """TPE for trials asked while others still run: the constant liar counts each running trial as a poor
    result, so concurrent trials spread out instead of piling onto one point. Only TPESampler's current
    arguments (the plugin's own ``tpe`` also passes those Optuna deprecated)."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None  # noqa: UP045 (OmegaConf reads the annotation at runtime)
    # random trials before TPE models the results
    n_startup_trials: int = 10
    # candidates TPE scores for each suggestion
    n_ei_candidates: int = 24
    # model the parameters jointly rather than one by one
    multivariate: bool = False
    constant_liar: bool = True


class HPOSweeper(OptunaSweeper):
    """Validates the whole config before any trial, then runs the study asynchronously inside an MLflow
    parent run.

    Hydra's callbacks turn exceptions into warnings, so the framing lives here where errors propagate.
    """

    def __init__(self, **settings: Any) -> None:
        # the plugin knows no pruner: the study gets it (None: hydra/sweeper/pruner=none)
        self.pruner = pruners.build(settings.pop("pruner", None))
        # the plugin only asserts these, and a sweep of no trials would report that it is done
        n_trials, rate = settings.get("n_trials"), settings.get("max_failure_rate")
        if n_trials is not None and n_trials < 1:
            raise ConfigError(f"hydra.sweeper.n_trials must be at least 1, got {n_trials}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {rate}")
        super().__init__(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hpo_config = config
        # before the launcher's own settings, which follow other sections (hardware.gpus_per_worker)
        validate(config)
        if self.pruner is not None and config.mode.name == "health":
            raise ConfigError(
                "mode=health scores a trial only once it ends, so no pruner can judge its epochs: prune in "
                "mode=simple, or set hydra/sweeper/pruner=none"
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hpo.driver.live import EventLog
        from hpo.driver.search_space import SearchSpace
        from hpo.driver.study import (
            OBJECTIVE_ATTR,
            PARENT_RUN_ATTR,
            TRACKING_URI_ATTR,
            StudyState,
            default_storage,
            open_study,
            public_url,
            reseeded,
        )
        from launchers.launcher import HPOLauncher

        config, impl = self.hpo_config, self.sweeper
        launcher = impl.launcher
        if not isinstance(launcher, HPOLauncher):
            raise ConfigError(
                "hydra/sweeper=hpo runs its trials through hydra/launcher=hpo; with another launcher use "
                "hydra/sweeper=optuna"
            )
        space = SearchSpace.parse(impl, arguments)
        check_trials(launcher, space)
        sampler, n_trials = space.grid_sampler(int(impl.n_trials))
        directions = private_apis.directions(impl)
        if self.pruner is not None and len(directions) > 1:
            raise ConfigError(
                f"a study of {len(directions)} objectives cannot prune its trials (Optuna prunes on one "
                "objective): set hydra/sweeper/pruner=none"
            )
        cwd = str(config.hydra.runtime.cwd)
        check_store(resolve_tracking_uri(str(config.mlflow.tracking_uri), cwd))
        storage = str(impl.storage or default_storage(str(config.mlflow.tracking_uri), cwd))
        name = str(impl.study_name or f"{config.mlflow.experiment_name}-{space.identity(*directions)}")
        # the backend first: hardware it cannot offer is refused before the study exists, and local slot
        # processes import their libraries while the study and the parent run open
        launcher.open()
        try:
            study = open_study(name, storage, sampler, directions, self.pruner)
            EventLog(Path(str(config.hydra.sweep.dir))).mark("study")
            state = StudyState.of(study)
            shown = f"study '{name}' in {public_url(storage)}"
            if state.asked >= n_trials and not state.stale:
                print(
                    f"{shown} already has {state.asked} of {n_trials} trials; raise "
                    "hydra.sweeper.n_trials or set hydra.sweeper.study_name to start another"
                )
                return None
            if state.asked:
                study.sampler = reseeded(
                    sampler, config.hydra.sweeper.get("sampler"), int(config.seed), state.asked
                )
                print(
                    f"resuming {shown}: {state.complete} completed, {state.pruned} pruned, {state.failed} "
                    f"failed, {len(state.stale)} interrupted (run again), "
                    f"{max(n_trials - state.asked, 0)} to ask"
                )
            else:
                log.info(f"new {shown}")
            sweep = Sweep(
                config,
                study={"study_name": name, "storage": public_url(storage)},
                resume_run_id=study.user_attrs.get(PARENT_RUN_ATTR),
                searched=list(space.distributions),
                final_plots=True,
            )
            if sweep.parent.resumed:
                sweep.sync_states(study)
            study.set_user_attr(PARENT_RUN_ATTR, sweep.parent.run_id)
            study.set_user_attr(TRACKING_URI_ATTR, sweep.tracking_uri)
            study.set_user_attr(OBJECTIVE_ATTR, sweep.objective)
            verb = "reopened" if sweep.parent.resumed else "parent run"
            log.info(
                f"MLflow: experiment '{sweep.experiment_name}' at {sweep.tracking_uri}, "
                f"{verb} {sweep.parent.run_id}"
            )
            return self._run(sweep, study, launcher, space, state, n_trials)
        finally:
            # whatever the backend keeps running beside the jobs (RunPod's cost meter) ends with the sweep,
            # however it ends; after the trial loop this only repeats what reading its cost did
            launcher.open().backend.close()

    def _run(
        self,
        sweep: Sweep,
        study: optuna.Study,
        launcher: HPOLauncher,
        space: SearchSpace,
        state: StudyState,
        n_trials: int,
    ) -> None:
        from hpo.driver.live import EventLog, SweepView
        from hpo.driver.trial_loop import LoopRules, TrialLoop

        budget = self.hpo_config.launcher.get("budget_usd")
        rules = LoopRules(
            n_trials, float(self.sweeper.max_failure_rate), None if budget is None else float(budget)
        )
        try:
            with SweepView(sweep.objective) as view:
                loop = TrialLoop(study, launcher, space, rules, sweep, view, EventLog(sweep.sweep_dir), state)
                loop.run()
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
            results = sweep.close(
                "KILLED" if interrupted else "FAILED", launcher.open().backend.cost_report()
            )
            summary = None if interrupted or isinstance(exc, HPOError) else sweep.failure_summary(results)
            if summary:
                raise HPOError(summary) from None
            raise
        cost = launcher.open().backend.cost_report()
        results = sweep.close("FINISHED" if results_ok(study) else "FAILED", cost)
        summary = sweep.failure_summary(results, study)
        if summary:
            raise HPOError(summary)
        print(results.describe())
        if cost:
            print(describe_cost(cost))
        print(f"results: {sweep.results_path}")
        print(f"browse:  mlflow ui --backend-store-uri {sweep.tracking_uri}")


def describe_cost(cost: dict[str, float]) -> str:
    """The backend's bill for the sweep in one line, with its parts."""
    parts = [(k, f"cost_{k}_usd") for k in ("execution", "cold_start", "idle")]
    shown = ", ".join(f"{name.replace('_', ' ')} ${cost[key]:.4f}" for name, key in parts if key in cost)
    return f"cost:    ${cost['cost_usd']:.4f} ({shown}; idle tail after the last trial included)"


def check_trials(launcher: HPOLauncher, space: SearchSpace) -> None:
    """Compose and validate, before any trial, configs that between them take every choice and both bounds
    of each searched parameter (``SearchSpace.probes``): a value no trial could run with (``model.dropout=
    choice(0.1, 1.5)``, an unknown key) fails the sweep with one error instead of every trial it is drawn in.
    """
    for overrides in space.probes():
        try:
            validate(launcher.prepare(overrides, 0).config)
        except (HPOError, HydraException, OmegaConfBaseException) as exc:
            reason, key = one_line(exc), getattr(exc, "full_key", None)
            if key and not reason.startswith(str(key)):
                reason = f"{key}: {reason}"  # a value set on a copied config: OmegaConf names its key apart
            raise ConfigError(f"the search space offers a value no trial can run with: {reason}") from None


def results_ok(study: optuna.Study) -> bool:
    """Whether the study holds at least one completed trial."""
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


ConfigStore.instance().store(group="hydra/sweeper", name="hpo", node=HPOSweeperConf, provider="hpo")
ConfigStore.instance().store(
    group="hydra/sweeper/sampler", name="tpe_async", node=TPEAsyncSamplerConf, provider="hpo"
)
for _option, _node in pruners.OPTIONS.items():
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_option, node=_node, provider="hpo")
