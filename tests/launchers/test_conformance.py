"""Hydra's own launcher conformance suites, run against the hpo launcher's local and slurm backends."""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from tests.slurm_cluster import slurm_cluster, slurm_daemons  # noqa: F401  (the SLURM tests' cluster)

pytestmark = pytest.mark.slow


def test_discovery() -> None:
    """Hydra finds the launcher through the hydra_plugins shim, by its full module path."""
    discovered = {f"{c.__module__}.{c.__qualname__}" for c in Plugins.instance().discover(Launcher)}
    assert "hydra_plugins.hpo_launchers.hpo_launcher.HPOLauncher" in discovered


@pytest.mark.parametrize("launcher_name, overrides", [("hpo", ["hydra.launcher.backend=local"])])
class TestHPOLauncher(LauncherTestSuite):
    """Hydra's launcher suite on the local backend."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {"defaults": [{"override hydra/launcher": "hpo"}]},
            ["-m"],
        )
    ],
)
class TestHPOLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: real example apps as subprocesses, launched by hpo."""


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize("launcher_name, overrides", [("hpo", ["hydra.launcher.backend=slurm"])])
class TestHPOLauncherSlurm(LauncherTestSuite):
    """Hydra's launcher suite on the slurm backend: every job a SLURM job, through submitit."""


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {"defaults": [{"override hydra/launcher": "hpo"}], "hydra": {"launcher": {"backend": "slurm"}}},
            ["-m"],
        )
    ],
)
class TestHPOLauncherSlurmIntegration(IntegrationTestSuite):
    """Hydra's integration suite with every job a SLURM job."""
