"""launcher.slurm.* and the hardware profile, as the options every trial's SLURM job is submitted with."""

from __future__ import annotations

import pytest
import yaml

from hpo.core.errors import ConfigError
from hpo.core.schema import launcher_settings
from launchers.slurm.backend import executor_parameters
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("profile, gpus", [("slurm_cpu", 0), ("slurm_1gpu", 1), ("slurm_2gpu", 2)])
def test_each_profile_runs_on_slurm_with_its_gpus(profile: str, gpus: int) -> None:
    hardware = yaml.safe_load((REPO_ROOT / "conf" / "hardware" / f"{profile}.yaml").read_text())
    assert hardware["backend"] == "slurm" and hardware["gpus_per_worker"] == gpus
    params = executor_parameters(launcher_settings({"backend": "slurm", "gpus_per_worker": gpus}))
    assert params.get("gpus_per_node") == (gpus or None), "a CPU profile asks SLURM for no GPU"


def test_settings_become_submitits_parameters() -> None:
    settings = launcher_settings(
        {
            "timeout_min": 90,
            "gpus_per_worker": 1,
            "slurm": {
                "partition": "gpu",
                "account": "lab",
                "qos": "high",
                "mem_gb": 16,
                "cpus_per_task": 8,
                "constraint": "a100",
                "additional_parameters": {"exclude": "node01"},
                "setup": ["module load cuda"],
            },
        }
    )
    assert executor_parameters(settings) == {
        "timeout_min": 90,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": 1,
        "mem_gb": 16.0,
        "cpus_per_task": 8,
        "slurm_partition": "gpu",
        "slurm_account": "lab",
        "slurm_qos": "high",
        "slurm_constraint": "a100",
        "slurm_additional_parameters": {"no_requeue": True, "exclude": "node01"},
        "slurm_setup": ["module load cuda"],
    }
    defaults = executor_parameters(launcher_settings({}))
    assert not {"slurm_partition", "mem_gb", "cpus_per_task", "gpus_per_node"} & defaults.keys(), (
        "unset options are the cluster's defaults"
    )


def test_a_bad_setting_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"launcher\.slurm\.cpus_per_task must be at least 1, got 0"):
        launcher_settings({"slurm": {"cpus_per_task": 0}})
