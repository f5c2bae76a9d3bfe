"""A user's loader that breaks the contract, through the real CLI: one line, exit 2, before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

USER_LOADER = '''
import numpy as np


def load(path):
    """Labels left as the names the user's file holds: the contract wants class ids."""
    with np.load(path) as data:
        x, names = data["x"], data["names"]
    return {"train": (x[:40], names[:40]), "test": (x[40:], names[40:])}
'''


def test_a_bad_loader_stops_the_sweep_with_one_line(run_hpo: RunHPO, tmp_path: Path) -> None:
    (tmp_path / "pets.py").write_text(USER_LOADER)
    names = np.array(["cat", "dog"])[np.arange(50) % 2]
    np.savez(tmp_path / "pets.npz", x=np.random.default_rng(0).random((50, 4)), names=names)
    args = [
        "-m",
        "dataset=npz",
        "model=mlp",
        "dataset.name=pets",
        "dataset.loader.path=pets.npz",
        "hydra.sweeper.n_trials=2",
        "launcher.workers=1",
        "trainer.max_epochs=1",
        "dataset.loader._target_=pets.load",
    ]
    out = run_hpo(args)
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: the sweep stopped: trial #0 could not load the dataset")
        and "Traceback" not in out.stderr
    )
    assert "dataset 'pets' (loader pets.load): its train labels are strings (the first: 'cat')" in last
    assert "#1 done" not in out.stderr + out.stdout, "no trial after the first trained"
