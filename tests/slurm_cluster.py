"""The single-node SLURM cluster the SLURM tests run on: started for the test session when SLURM is
installed but not running (by ``.ci/slurm/start.sh``, as root), stopped at its end if this session started it.

Test modules import the ``slurm_cluster`` fixture from here; without SLURM installed, its tests are skipped
with one reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

START = REPO_ROOT / ".ci" / "slurm" / "start.sh"
STOP = REPO_ROOT / ".ci" / "slurm" / "stop.sh"
NOT_INSTALLED = (
    "SLURM is not installed (needs Debian's slurmctld slurmd slurm-client munge slurmdbd mariadb-server, "
    "as .ci/run installs them)"
)


def slurm_running() -> bool:
    """Whether a SLURM controller answers with an idle or busy node."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.split())


def sweep_jobs(sweep_dir: Path) -> list[str]:
    """The ids of every SLURM job a sweep submitted (its trials' job folders are named by them)."""
    return sorted(p.name for p in sweep_dir.glob(".slurm/trial_*/*") if p.name.isdigit())


# the states of a job that is still there: pending, running, completing (being killed), suspended, ...
LIVE_STATES = "PD,R,CG,CF,S,RQ,RS,SI,SO,ST"


def listed_jobs(job_ids: list[str], states: str = LIVE_STATES) -> list[str]:
    """Those of ``job_ids`` that ``squeue`` lists in one of ``states`` (by default, every job not ended)."""
    if not job_ids:
        return []
    out = subprocess.run(
        ["squeue", "-h", "-t", states, "-j", ",".join(job_ids), "-o", "%i"], capture_output=True, text=True
    )
    return out.stdout.split()


def wait_until_gone(sweep_dir: Path, timeout_s: float = 60.0) -> list[str]:
    """Wait until ``squeue`` lists none of the sweep's jobs (a cancelled job takes up to its KillWait to
    leave), or ``timeout_s`` passed; the jobs still listed then."""
    deadline = time.monotonic() + timeout_s
    while (left := listed_jobs(sweep_jobs(sweep_dir))) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="session")
def slurm_daemons() -> Iterator[None]:
    """A SLURM cluster that answers ``sbatch``, ``squeue`` and ``sacct`` for the whole session."""
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip(NOT_INSTALLED)
    started = False
    if not slurm_running():
        if os.geteuid() != 0:
            pytest.skip(
                "SLURM is installed but not running, and starting it needs root: run .ci/slurm/start.sh"
            )
        subprocess.run(["bash", str(START)], check=True, capture_output=True, timeout=120)
        started = True
    yield
    if started:
        subprocess.run(["bash", str(STOP)], check=False, capture_output=True, timeout=120)


@pytest.fixture
def slurm_cluster(
    slurm_daemons: None, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's SLURM cluster, with Python's bytecode cache on for the jobs this test submits (they
    inherit its environment): where the environment turns it off, each job would compile MLflow and
    TensorFlow from source, which an installed cluster's jobs never do."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        monkeypatch.delenv("PYTHONDONTWRITEBYTECODE")
        monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path_factory.getbasetemp() / "slurm-pycache"))
