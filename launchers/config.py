"""Config schema of the hpo launcher, registered as ``hydra/launcher=hpo``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class RunPodLauncherConf:
    # serverless endpoint running hpo's worker image; RUNPOD_ENDPOINT_ID overrides it
    endpoint_id: Optional[str] = None  # noqa: UP045 (OmegaConf reads the annotation at runtime)
    # RunPod's endpoint API, or the local emulator's
    api_base: str = "https://api.runpod.ai/v2"
    # endpoint unreachable at start: fail, or run the sweep on the local backend
    fallback: str = "fail"
    # seconds between two status polls of one job
    poll_interval_s: float = 1.0
    # jobs submitted beyond workers (None: one per worker, which it holds while it trains, plus one per 4)
    queue_ahead: Optional[int] = None  # noqa: UP045


@dataclass
class HPOLauncherConf:
    _target_: str = "hydra_plugins.hpo_launchers.hpo_launcher.HPOLauncher"
    # jobs running at once
    workers: int = 2
    # where jobs run: local (worker processes on this machine) or runpod (a serverless endpoint)
    backend: str = "local"
    # a job running longer than this is stopped and reported as failed
    timeout_min: int = 60
    # GPUs given to each running job (local backend: a CUDA_VISIBLE_DEVICES partition); 0 hides them
    gpus_per_worker: int = 0
    # seconds between two checks of the running jobs
    poll_interval_s: float = 0.1
    # where each job's pickled spec and log, and each local worker slot's log, are kept (%j: job or slot)
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    # resubmissions of a trial lost to the infrastructure (runpod: worker lost, timed out, API unreachable)
    max_retries: int = 2
    # USD per hour of one worker's GPU time, for cost estimates (runpod)
    price_per_hour: float = 0.0
    runpod: RunPodLauncherConf = field(default_factory=RunPodLauncherConf)


ConfigStore.instance().store(group="hydra/launcher", name="hpo", node=HPOLauncherConf, provider="hpo")
