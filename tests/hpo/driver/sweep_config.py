"""hpo's real config as a sweep composes it, for tests that build the driver's parts in the test process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig

from hpo.driver.cli import CONF_DIR
from hpo.driver.sweep_run import Sweep
from hpo.driver.sweeper import HPOSweeper
from hpo.driver.trial_loop import TrialLoop
from launchers.launcher import HPOLauncher


def compose_sweep(tmp_path: Path, *overrides: str) -> tuple[DictConfig, HydraContext]:
    """The config of ``python -m hpo -m <overrides>`` with its sweep directory in ``tmp_path``, made this
    process's Hydra config, and the context to instantiate Hydra's plugins in."""
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(
        task_name="hpo", config_search_path=create_config_search_path(str(CONF_DIR))
    )
    cfg = hydra.compose_config(
        config_name="config",
        overrides=[f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
        run_mode=RunMode.MULTIRUN,
        with_log_configuration=False,
    )
    HydraConfig.instance().set_config(cfg)
    return cfg, HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))


def hpo_sweeper(tmp_path: Path, *overrides: str) -> tuple[DictConfig, HPOSweeper, HPOLauncher]:
    """hpo's sweeper for ``python -m hpo -m <overrides>`` (see ``compose_sweep``), set up as Hydra sets it up
    before sweeping, and its launcher."""
    cfg, context = compose_sweep(tmp_path, *overrides)
    sweeper = Plugins.instance().instantiate_sweeper(
        hydra_context=context, task_function=lambda c: None, config=cfg
    )
    assert isinstance(sweeper, HPOSweeper)
    launcher = sweeper.sweeper.launcher
    assert isinstance(launcher, HPOLauncher)
    return cfg, sweeper, launcher


@dataclass
class Rig:
    """A trial loop built in the test process, and the backend its jobs run on."""

    study: optuna.Study
    backend: Any
    sweep: Sweep
    loop: TrialLoop
