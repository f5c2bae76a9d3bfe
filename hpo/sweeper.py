"""hpo's sweeper: Optuna's batch sweeper framed by a validated config and an MLflow parent run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

from hpo.errors import HPOError
from hpo.schema import validate
from hpo.sweep import Sweep

log = logging.getLogger(__name__)


@dataclass
class HPOSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.hpo_launchers.hpo_sweeper.HPOSweeper"


class HPOSweeper(OptunaSweeper):
    """Validates the whole config before any trial, then runs Optuna's sweep inside an MLflow parent run.

    Hydra's callbacks turn exceptions into warnings, so the framing lives here where errors propagate.
    """

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hpo_config = config
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        validate(self.hpo_config)
        # Parse the search space now, so a malformed expression fails before any run is recorded.
        create_params_from_overrides([*self.sweeper._parse_sweeper_params_config(), *arguments])
        sweep = Sweep(self.hpo_config)
        log.info(
            f"MLflow: experiment '{sweep.experiment_name}' at {sweep.tracking_uri}, "
            f"parent run {sweep.parent.run_id}"
        )
        try:
            super().sweep(arguments)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
            results = sweep.close("KILLED" if interrupted else "FAILED")
            summary = None if interrupted else sweep.failure_summary(results)
            if summary:
                raise HPOError(summary) from None
            raise
        results = sweep.close("FINISHED")
        print(results.describe())
        print(f"results: {sweep.results_path}")
        print(f"browse:  mlflow ui --backend-store-uri {sweep.tracking_uri}")


ConfigStore.instance().store(group="hydra/sweeper", name="hpo", node=HPOSweeperConf, provider="hpo")
