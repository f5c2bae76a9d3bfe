"""What ``python -m hpo`` does before its own imports, which must stay cheap: the slots' libraries start
loading only once it ran."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hpo.driver.early_start import sweeping
from tests.conftest import REPO_ROOT


def test_the_early_start_imports_the_standard_library_alone() -> None:
    code = "import json, sys, hpo.driver.early_start; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert loaded - set(sys.stdlib_module_names) - {"hpo", "launchers"} <= {"__main__", "_distutils_hack"}, (
        "no library of the driver's (Hydra, OmegaConf, SQLAlchemy...) before the zygote starts"
    )


@pytest.mark.parametrize(
    ("argv", "sweep"),
    [
        (["-m"], True),
        (["--multirun", "seed=1"], True),
        (["hydra.mode = MULTIRUN"], True),
        (["seed=1"], False),
        (["--cfg", "job"], False),
    ],
)
def test_a_sweep_is_told_from_its_arguments(argv: list[str], sweep: bool) -> None:
    assert sweeping(argv) is sweep
