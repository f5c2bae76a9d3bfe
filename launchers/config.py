"""Config schema of the hpo launcher, registered as ``hydra/launcher=hpo``: the one ``LauncherConf``."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from hpo.core.schema import LauncherConf


@dataclass
class HPOLauncherConf(LauncherConf):
    _target_: str = "hydra_plugins.hpo_launchers.hpo_launcher.HPOLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="hpo", node=HPOLauncherConf, provider="hpo")
