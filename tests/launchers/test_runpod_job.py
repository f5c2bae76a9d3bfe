"""A RunPod job's cost (its time on the worker, less any wait there behind the worker's trial before) and
the config files it leaves in its trial directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from hpo.core.payload import WORKER_WAIT_KEY
from hpo.core.schema import register_configs
from hpo.driver.cli import CONF_DIR
from launchers.hydra_job import JobSpec
from launchers.runpod.job import billed_ms, save_job_config


@pytest.mark.parametrize(
    ("status", "billed"),
    [
        ({"executionTime": 5000}, 5000),
        ({"executionTime": 5000, "output": {"objective": 0.5, WORKER_WAIT_KEY: 2.0}}, 3000),
        ({"executionTime": 1500, "output": {WORKER_WAIT_KEY: 2.0}}, 0),
        ({"executionTime": 5000, "output": "not a dict"}, 5000),
        ({}, 0),
    ],
)
def test_a_held_job_is_billed_only_for_its_own_trial(status: dict[str, object], billed: float) -> None:
    assert billed_ms(status) == pytest.approx(billed)


def test_a_remote_trial_saves_the_config_files_hydra_saves_for_a_local_one(
    tmp_path: Path, hydra_restore_singletons: Any
) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose(config_name="config", overrides=["hardware=runpod_1gpu"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    # values YAML would read as something else, and non-ASCII text, written as Hydra writes them
    config.model.activation, config.mlflow.experiment_name = "on", "ünïcode"
    overrides = ["trainer.learning_rate=0.01", "model.activation=on", "mlflow.experiment_name=ünïcode"]
    save_job_config(JobSpec(3, overrides, config), tmp_path)

    task = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == OmegaConf.to_yaml(task)
    assert (tmp_path / ".hydra" / "overrides.yaml").read_text() == OmegaConf.to_yaml(
        OmegaConf.create(overrides)
    )
    assert "${" in (tmp_path / ".hydra" / "config.yaml").read_text()
