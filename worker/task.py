"""The Hydra task: turns one composed config into a trial request and hands it to the worker."""

from __future__ import annotations

import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hpo.core.names import BEST_SO_FAR_ENV, PARENT_RUN_ENV, TRIAL_RUN_ENV
from hpo.core.payload import payload_config
from hpo.core.schema import validate
from hpo.core.store import check_store, resolve_tracking_uri


def run(cfg: DictConfig) -> float:
    """Run the trial ``cfg`` describes and return its objective (what the sweeper optimises).

    In a sweep this runs in the launcher's job process, never in the driver, so TensorFlow is only
    imported where training happens.
    """
    from worker.trial import TrialRequest, run_trial

    validate(cfg)
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    payload = payload_config(cfg)
    payload["mlflow"]["tracking_uri"] = resolve_tracking_uri(cfg.mlflow.tracking_uri, hydra_cfg.runtime.cwd)
    if not sweeping:
        # a sweep's driver checked the store before its first trial
        check_store(payload["mlflow"]["tracking_uri"])
    request = TrialRequest(
        config=payload,
        trial_number=int(hydra_cfg.job.num) if sweeping else 0,
        parent_run_id=os.environ.get(PARENT_RUN_ENV) if sweeping else None,
        overrides=list(hydra_cfg.overrides.task),
        run_id=os.environ.get(TRIAL_RUN_ENV) if sweeping else None,
        best_so_far=float(os.environ[BEST_SO_FAR_ENV])
        if sweeping and BEST_SO_FAR_ENV in os.environ
        else None,
    )
    return run_trial(request).objective
