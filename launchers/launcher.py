"""The hpo Hydra launcher: composes each job's config in the driver and runs the jobs on a backend."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from omegaconf.basecontainer import BaseContainer

from hpo.errors import ConfigError
from launchers.backend import Backend
from launchers.job import JobRunner, JobSpec

log = logging.getLogger(__name__)

BACKENDS = ("local",)


class HPOLauncher(Launcher):
    """Runs a sweep's jobs, up to ``workers`` at once, on the configured backend."""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from launchers.dispatch import run_jobs

        assert self.config is not None
        assert self.hydra_context is not None
        workers = int(self.params["workers"])
        if workers < 1:
            raise ConfigError(f"launcher.workers must be at least 1, got {workers}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"hpo launcher ({self.params['backend']}, {workers} workers): {sweep_dir}")
        specs = [self._compose(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        return run_jobs(self._backend(), specs, workers, float(self.params["poll_interval_s"]))

    def _compose(self, num: int, overrides: list[str]) -> JobSpec:
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.id = f"{config.hydra.job.name}_{num}"
            config.hydra.job.num = num
        return JobSpec(num=num, overrides=overrides, config=config)

    def _backend(self) -> Backend:
        assert self.hydra_context is not None and self.task_function is not None
        backend = str(self.params["backend"])
        if backend not in BACKENDS:
            raise ConfigError(f"launcher.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        runner = JobRunner(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            singleton_state=Singleton.get_state(),
            resolvers=dict(BaseContainer._resolvers),
        )
        from launchers.local import LocalBackend

        timeout_min = int(self.params["timeout_min"])
        if timeout_min < 1:
            raise ConfigError(f"launcher.timeout_min must be at least 1, got {timeout_min}")
        workers, gpus = int(self.params["workers"]), int(self.params["gpus_per_worker"])
        return LocalBackend(runner, self.params["submitit_folder"], timeout_min, workers, gpus)
