"""What identifies a trial in MLflow, computed the same way by the driver and by any worker."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from hpo.core.code_version import version_tags
from hpo.core.names import TRIAL_NUMBER_TAG
from hpo.core.schema import HPOConfig, flatten


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A 31-bit seed derived from the study seed and the trial number (stable across machines)."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0] & 0x7FFFFFFF)


def trial_params(config: dict[str, Any], cfg: HPOConfig) -> dict[str, Any]:
    """The trial's MLflow params: its model and trainer settings, dataset, mode and study seed."""
    params = flatten({k: config[k] for k in ("model", "trainer")})
    params.update(
        {
            "dataset": cfg.dataset.name,
            "dataset.fraction": cfg.dataset.fraction,
            "mode": cfg.mode.name,
            "seed": cfg.seed,
        }
    )
    return params


def trial_tags(cfg: HPOConfig, trial_number: int, overrides: list[str]) -> dict[str, str]:
    """The tags every trial run carries, whichever backend ran it."""
    return {
        TRIAL_NUMBER_TAG: str(trial_number),
        "hpo.trial_seed": str(trial_seed(cfg.seed, trial_number)),
        "hpo.overrides": json.dumps(overrides),
        "hpo.backend": cfg.launcher.backend,
        "hpo.hardware": cfg.hardware.name,
        **version_tags(),
    }
