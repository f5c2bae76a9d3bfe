"""Config schema of the hpo launcher, registered as ``hydra/launcher=hpo``."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class HPOLauncherConf:
    _target_: str = "hydra_plugins.hpo_launchers.hpo_launcher.HPOLauncher"
    # jobs running at once
    workers: int = 2
    # where jobs run: local (submitit subprocesses on this machine)
    backend: str = "local"
    # a job running longer than this is stopped and reported as failed
    timeout_min: int = 60
    # GPUs given to each running job (local backend: a CUDA_VISIBLE_DEVICES partition); 0 hides them
    gpus_per_worker: int = 0
    # seconds between two checks of the running jobs
    poll_interval_s: float = 0.1
    # where submitit keeps each job's pickles and logs (%j: the job id)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"


ConfigStore.instance().store(group="hydra/launcher", name="hpo", node=HPOLauncherConf, provider="hpo")
