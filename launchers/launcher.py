"""The hpo Hydra launcher: composes each job's config in the driver and runs the jobs on a backend."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict
from omegaconf.basecontainer import BaseContainer

from hpo.core.errors import ConfigError
from hpo.core.schema import LauncherConf, launcher_settings
from hpo.core.store import resolve_tracking_uri
from hpo.core.trial_record import TrialRunRecords
from launchers.backend import Backend
from launchers.compose import JobComposer
from launchers.hydra_job import JobRunner, JobSpec

if TYPE_CHECKING:
    from launchers.dispatch import InFlight, Job

log = logging.getLogger(__name__)


class HPOLauncher(Launcher):
    """Runs a sweep's jobs, up to ``workers`` at once, on the configured backend.

    Two ways in: Hydra's blocking ``launch`` (a batch at a time), and the non-blocking ``prepare`` /
    ``start`` / ``finished`` / ``collect`` / ``cancel_all`` that hpo's asynchronous sweeper uses. Both share
    one backend and one set of worker slots for the whole sweep.

    Unlike its plugin subclass, this class knows no MLflow store: a remote backend is given
    ``trial_records`` to record each trial's run in the driver's store.
    """

    trial_records: TrialRunRecords | None = None

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.settings = LauncherConf()
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self._flight: InFlight | None = None
        self._composer: JobComposer | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.settings = launcher_settings(self.params)
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self._flight = None
        self._composer = None
        from launchers.local import stop_preloading
        from launchers.preloading import start_preloading

        if self.settings.backend == "local":
            # the slots' libraries load from now on (or since the CLI started), while the sweeper gets ready
            start_preloading(self.settings.preload, self._jobs_dir(Path(str(config.hydra.sweep.dir))))
        else:
            stop_preloading()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run one batch of jobs to the end (Hydra's blocking launcher API, used by batch sweepers)."""
        from launchers.dispatch import run_jobs

        flight = self.open()
        specs = [self.prepare(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        return run_jobs(flight, specs)

    def open(self, backend: Backend | None = None) -> InFlight:
        """Prepare the sweep directory and the backend, once per sweep; later calls return the same jobs.

        ``backend`` runs the jobs instead of the configured one (an embedding program's own backend).
        """
        from launchers.dispatch import InFlight

        if self._flight is not None:
            return self._flight
        assert self.config is not None
        workers = self.settings.workers
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info(f"hpo launcher ({self.settings.backend}, {workers} workers): {sweep_dir}")
        backend = backend or self._backend(sweep_dir)
        # a backend with a queue of its own keeps some jobs waiting there, ready for the next free worker
        slots = workers + backend.queue_ahead
        self._flight = InFlight(backend, slots, self.settings.poll_interval_s)
        return self._flight

    @property
    def workers(self) -> int:
        return self.settings.workers

    @property
    def free_slots(self) -> int:
        """Jobs that can be submitted now without exceeding ``workers``."""
        return self.open().free_slots

    @property
    def running(self) -> list[Job]:
        return self.open().running

    def start(
        self,
        spec: JobSpec,
        best_so_far: float | None = None,
        run_id: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Start the prepared ``spec`` (see ``prepare``) in a free slot; returns at once.

        ``run_id`` names an MLflow run the job continues; ``job_id`` a job an earlier driver submitted, which
        a backend that can ``attach`` follows instead of starting a new one.
        """
        spec.best_so_far, spec.run_id = best_so_far, run_id
        return self.open().start(spec, (job_id, run_id) if job_id else None)

    def finished(self) -> list[Job]:
        """The jobs that have stopped and wait to be collected; never blocks."""
        return self.open().finished()

    def collect(self, job: Job) -> JobReturn:
        """A stopped job's return, freeing its slot."""
        return self.open().collect(job)

    def cancel_all(self) -> None:
        """Cancel every running job and wait (briefly) until they have recorded how they ended."""
        if self._flight is not None:
            self._flight.cancel_all()

    def wait(self) -> None:
        """Wait one poll interval, or until a running job stops where the backend can tell."""
        self.open().wait()

    def prepare(self, overrides: Sequence[str], num: int) -> JobSpec:
        """Job ``num``'s config composed, ready to ``start`` (ahead of a free slot, or just before)."""
        assert self.config is not None and self.hydra_context is not None
        if self._composer is None:
            self._composer = JobComposer(self.hydra_context.config_loader, self.config)
        config = self._composer.compose(list(overrides))
        with open_dict(config.hydra.job):
            config.hydra.job.id = f"{config.hydra.job.name}_{num}"
            config.hydra.job.num = num
        return JobSpec(num=num, overrides=list(overrides), config=config)

    @staticmethod
    def _jobs_dir(sweep_dir: Path) -> Path:
        return sweep_dir / ".jobs"

    def _backend(self, sweep_dir: Path) -> Backend:
        jobs_dir = self._jobs_dir(sweep_dir)
        if self.settings.backend == "runpod":
            from launchers.runpod.backend import EndpointUnreachable

            try:
                return self._runpod_backend()
            except EndpointUnreachable as exc:
                if self.settings.runpod.fallback != "local":
                    raise
                log.warning(
                    f"{exc}\n*** launcher.runpod.fallback=local: running this sweep on THIS machine ***"
                )
                return self._local_backend(jobs_dir, fallback=True)
        if self.settings.backend == "slurm":
            return self._slurm_backend(sweep_dir / ".slurm")
        return self._local_backend(jobs_dir)

    def _runner(self) -> JobRunner:
        """What every job runs: the task with Hydra's singletons and OmegaConf's resolvers of this driver."""
        assert self.hydra_context is not None and self.task_function is not None
        return JobRunner(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            singleton_state=Singleton.get_state(),
            resolvers=dict(BaseContainer._resolvers),
        )

    def _local_backend(self, jobs_dir: Path, fallback: bool = False) -> Backend:
        """The local backend; as a fallback for a remote one, it trains on the CPU if this machine lacks
        the GPUs the hardware profile asks for."""
        from launchers.local import LocalBackend, gpu_pool

        workers, gpus = self.settings.workers, self.settings.gpus_per_worker
        if fallback and gpus and len(gpu_pool()) < gpus * workers:
            log.warning(
                f"this machine lacks {gpus * workers} GPUs for {workers} workers: training on the CPU"
            )
            gpus = 0
        return LocalBackend(
            self._runner(), jobs_dir, self.settings.timeout_min, workers, gpus, self.settings.preload
        )

    def _slurm_backend(self, jobs_dir: Path) -> Backend:
        """The slurm backend, after checking that no SQLite store the jobs write sits on a network FS."""
        from launchers.slurm.backend import SlurmBackend

        assert self.config is not None
        stores: dict[str, str] = {}
        if "mlflow" in self.config:
            start_dir = str(self.config.hydra.runtime.cwd)
            uri = resolve_tracking_uri(str(self.config.mlflow.tracking_uri), start_dir)
            stores["mlflow.tracking_uri"] = uri
        storage = self.config.hydra.sweeper.get("storage")
        if isinstance(storage, str):
            stores["hydra.sweeper.storage"] = storage
        return SlurmBackend(self._runner(), jobs_dir, self.settings, stores)

    def _runpod_backend(self) -> Backend:
        from hpo.core.payload import JOBS_HELD_PER_WORKER
        from launchers.runpod.backend import RunPodBackend, RunPodSettings
        from launchers.runpod.job import JobPolicy

        if self.trial_records is None:
            raise ConfigError(
                "launcher.backend=runpod records each trial in the driver's MLflow store: run it through "
                "hydra/launcher=hpo (hydra_plugins.hpo_launchers), which provides the records"
            )
        settings = self.settings
        policy = JobPolicy(
            poll_interval_s=settings.runpod.poll_interval_s,
            max_retries=settings.max_retries,
            timeout_s=settings.timeout_min * 60.0,
            price_per_hour=settings.price_per_hour,
            retry_timeouts=settings.runpod.retry_timeouts,
            queue_timeout_s=settings.runpod.queue_timeout_s,
        )
        queue_ahead = settings.runpod.queue_ahead
        if queue_ahead is None:
            workers = settings.workers
            queue_ahead = workers * (JOBS_HELD_PER_WORKER - 1) + math.ceil(workers / 4)
        return RunPodBackend(
            RunPodSettings.from_launcher(settings.runpod),
            policy,
            self.trial_records,
            queue_ahead,
            workers=settings.workers,
            gpus_per_worker=settings.gpus_per_worker,
        )
