"""The hpo launcher as Hydra instantiates it for a sweep, for tests that drive it directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode, TaskFunction

from launchers.launcher import HPOLauncher


def make_launcher(
    task: TaskFunction, sweep_dir: Path, workers: int, gpus_per_worker: int = 0, preload: Sequence[str] = ()
) -> HPOLauncher:
    """``hydra/launcher=hpo`` with ``workers`` slots of ``gpus_per_worker`` GPUs (their processes forked with
    ``preload`` imported), running ``task``."""
    hydra = Hydra.create_main_hydra2(task_name="test", config_search_path=create_config_search_path(None))
    cfg = hydra.compose_config(
        config_name=None,
        overrides=[
            "hydra/launcher=hpo",
            f"hydra.launcher.workers={workers}",
            f"hydra.launcher.gpus_per_worker={gpus_per_worker}",
            f"hydra.sweep.dir={sweep_dir}",
            f"hydra.launcher.preload=[{','.join(preload)}]",
        ],
        run_mode=RunMode.MULTIRUN,
        with_log_configuration=False,
    )
    HydraConfig.instance().set_config(cfg)
    context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
    launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task, config=cfg)
    assert isinstance(launcher, HPOLauncher)
    return launcher
