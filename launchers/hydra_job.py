"""What a launcher runs for one job: a composed sweep config, executed the way Hydra's launchers do."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from omegaconf.basecontainer import BaseContainer

from hpo.core.closed_runs import ClosedRun, take_closed_runs
from hpo.core.names import BEST_SO_FAR_ENV, TRIAL_RUN_ENV


@dataclass
class JobSpec:
    """One job of a sweep: its number, its overrides and its config composed by the driver."""

    num: int
    overrides: list[str]
    config: DictConfig
    # the study's best objective when the trial was asked, if known (reports.plots=best)
    best_so_far: float | None = None
    # an MLflow run the job continues instead of opening a new one (a trial re-run after its driver died)
    run_id: str | None = None


@dataclass
class JobResult:
    """What a job process sends back: Hydra's return, and the trial runs the job closed (with the Optuna
    state each was tagged with), so that the sweep knows them without searching MLflow."""

    ret: JobReturn
    closed_runs: list[ClosedRun]


@dataclass
class JobRunner:
    """A picklable callable that runs one job in a job process and returns its ``JobResult``.

    It carries Hydra's singletons and OmegaConf's custom resolvers from the driver, so the job's
    config resolves in the child exactly as it would have in the driver.
    """

    hydra_context: HydraContext
    task_function: TaskFunction
    singleton_state: dict[Any, Any]
    resolvers: dict[str, Callable[..., Any]]

    def __call__(self, spec: JobSpec) -> JobResult:
        for name, value in ((TRIAL_RUN_ENV, spec.run_id), (BEST_SO_FAR_ENV, spec.best_so_far)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        Singleton.set_state(self.singleton_state)
        setup_globals()
        for name, resolver in self.resolvers.items():
            BaseContainer._resolvers.setdefault(name, resolver)
        take_closed_runs()
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=spec.config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        return JobResult(ret, take_closed_runs())


def failed_return(spec: JobSpec, error: BaseException) -> JobReturn:
    """A ``JobReturn`` for a job that never returned one (its process died, timed out or was cancelled)."""
    ret = JobReturn(
        overrides=spec.overrides,
        cfg=spec.config,
        hydra_cfg=spec.config.hydra,
        task_name=str(spec.config.hydra.job.name),
        status=JobStatus.FAILED,
    )
    ret.return_value = error
    return ret
