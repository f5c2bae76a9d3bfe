"""hpo's real CLI, config, sweeper and launcher around a stand-in task that needs no TensorFlow.

``TOY_PLAN`` (JSON) says what each trial number does: ``"nan"`` returns NaN, ``"raise"`` raises, a number
sleeps that many seconds first; ``"*"`` is the default. The trial's learning rate is its objective.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import hpo.driver.cli


def task(cfg: DictConfig) -> float:
    num = int(HydraConfig.get().job.num)
    plan = json.loads(os.environ.get("TOY_PLAN", "{}"))
    what = plan.get(str(num), plan.get("*", 0.0))
    if what == "nan":
        return math.nan
    if what == "raise":
        raise ValueError(f"trial {num} raised on purpose")
    time.sleep(float(what))
    return float(cfg.trainer.learning_rate)


if __name__ == "__main__":
    hpo.driver.cli.run = task
    sys.exit(hpo.driver.cli.main())
