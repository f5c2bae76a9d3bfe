"""The version of the code a trial runs: the git commit of hpo's checkout, with ``-dirty`` when tracked
files have uncommitted changes. The driver looks it up once and hands it to its trials through the
environment; a worker image without the repository has none, and its trials' runs keep the driver's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV = "HPO_CODE_VERSION"
ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def code_version() -> str | None:
    """The checkout's commit (``<sha>`` or ``<sha>-dirty``), or None outside a git checkout."""
    if ENV not in os.environ:
        try:
            commit = _git("rev-parse", "HEAD")
            dirty = _git("status", "--porcelain", "--untracked-files=no")
        except (OSError, subprocess.SubprocessError):
            os.environ[ENV] = ""
        else:
            os.environ[ENV] = f"{commit}-dirty" if dirty else commit
    return os.environ[ENV] or None


def version_tags() -> dict[str, str]:
    """MLflow tags naming the code version: hpo's own, and MLflow's git commit that its UI shows."""
    version = code_version()
    if version is None:
        return {}
    return {"hpo.code_version": version, "mlflow.source.git.commit": version.removesuffix("-dirty")}
