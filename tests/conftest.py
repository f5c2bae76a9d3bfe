"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import hydra_plugins.hpo_launchers.hpo_launcher
import hydra_plugins.hpo_launchers.hpo_sweeper  # noqa: F401
from hpo.core import interrupts
from hpo.core.schema import register_configs

# Hydra's test fixtures snapshot and restore the ConfigStore around each test, so hpo's configs are
# registered once here, before any snapshot, rather than by whichever test first imports them.
register_configs()

REPO_ROOT = Path(__file__).resolve().parent.parent

RunHPO = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_hpo(tmp_path: Path) -> RunHPO:
    """Run ``python -m hpo`` in a subprocess from ``tmp_path``, as a user would from a shell."""

    def run(
        args: Sequence[str], *python_flags: str, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k != "HPO_DEBUG"}
        environ.update(KERAS_HOME=str(tmp_path / "keras"), **env)
        return subprocess.run(
            [sys.executable, *python_flags, "-m", "hpo", *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def sigint_stops(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ctrl-C (SIGINT) handled by ``hpo.core.interrupts``, as the CLI sets it up, with no signal received yet;
    the test process's own handler comes back afterwards."""
    monkeypatch.setattr(interrupts, "_received", [])
    before = signal.getsignal(signal.SIGINT)
    interrupts.stop_on(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)
