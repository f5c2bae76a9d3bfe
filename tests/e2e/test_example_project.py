"""The example user project (examples/spirals), swept from a copy of its folder outside the checkout, as a
user runs it: on the local backend, and on the RunPod emulator's workers, which get its code shipped."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from hpo.core.user_code import CACHE_DIR_NAME, code_bundle
from launchers.runpod.emulator import EmulatorProcess
from tests.conftest import REPO_ROOT, RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXAMPLE = REPO_ROOT / "examples" / "spirals"
EXPERIMENT = "spirals"
API_KEY = "rp-test-KEY-example-project"
# the README's sweep, small: two trials of two epochs, one at a time (one TensorFlow import on 2 cores)
SWEEP = [
    "-m",
    "--config-dir",
    "./conf",
    "dataset=spirals",
    "trainer.max_epochs=2",
    "hydra.sweeper.n_trials=2",
    "launcher.workers=1",
    "reports.plots=all",
    f"mlflow.experiment_name={EXPERIMENT}",
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example's folder in ``tmp_path``, the directory ``run_hpo`` runs from, without what
    earlier sweeps in it left (its .gitignore)."""
    ignored = (EXAMPLE / ".gitignore").read_text().splitlines()
    leftovers = shutil.ignore_patterns("__pycache__", *(p.rstrip("/") for p in ignored if p and p[0] != "#"))
    shutil.copytree(EXAMPLE, tmp_path, dirs_exist_ok=True, ignore=leftovers)
    return tmp_path


@pytest.fixture
def worker_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulated worker's temporary directory, where it unpacks shipped code."""
    return tmp_path_factory.mktemp("worker-tmp")


@pytest.fixture
def emulator(tmp_path_factory: pytest.TempPathFactory, worker_tmp: Path) -> Iterator[EmulatorProcess]:
    """One real ``python -m worker`` behind the emulator."""
    logs = tmp_path_factory.mktemp("emulator-logs")
    with EmulatorProcess(
        workers=1, gpu_count=0, api_key=API_KEY, log_dir=logs, env={"TMPDIR": str(worker_tmp)}
    ) as emu:
        yield emu


def _children(store: Path) -> list[Any]:
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _check_sweep(project: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The sweep's child runs, each checked for what the issue's "done when" asks: architecture artifacts,
    curves, a model that loads back and predicts the three classes; the best one registered."""
    store = project / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    children = _children(store)
    assert sorted(r.data.tags["hpo.trial_number"] for r in children) == ["0", "1"]
    # mlflow's fluent load_model reads the global tracking URI; the test's is undone afterwards
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", f"sqlite:///{store}")
    table = np.loadtxt(project / "spirals" / "points.csv", delimiter=",", skiprows=1, dtype="float32")
    points = table[:5, :2]
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.params["model._target_"] == "spirals.net.residual_mlp"
        logged = {a.path for a in client.list_artifacts(run_id, "architecture")}
        logged |= {a.path for a in client.list_artifacts(run_id, "plots")}
        assert {"architecture/architecture.json", "plots/training_curves.png"} <= logged
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [0, 1]
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert {i.dataset.source_type for i in inputs} == {"code"}, "the loader is recorded as the source"
        model = mlflow.keras.load_model(f"runs:/{run_id}/model")
        assert model.predict(points, verbose=0).shape == (5, 3)
    best = max(children, key=lambda r: r.data.metrics["objective"])
    (version,) = client.search_model_versions(f"name='{EXPERIMENT}-best'")
    assert version.run_id == best.info.run_id
    return children


def test_the_shipped_data_file_is_what_its_script_makes(project: Path) -> None:
    made = project / "spirals" / "points.csv"
    made.unlink()
    subprocess.run([sys.executable, "make_points.py"], cwd=project, check=True)
    assert made.read_bytes() == (EXAMPLE / "spirals" / "points.csv").read_bytes()


def test_the_example_sweeps_on_the_local_backend_from_its_own_folder(
    run_hpo: RunHPO, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_hpo(SWEEP)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 of 2 trials completed, 0 failed" in out.stdout
    _check_sweep(project, monkeypatch)


def test_the_example_sweeps_on_runpod_with_its_code_shipped_and_verified(
    run_hpo: RunHPO,
    project: Path,
    emulator: EmulatorProcess,
    worker_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert importlib.util.find_spec("spirals") is None, "the workers cannot import the example unless shipped"
    out = run_hpo(
        [
            *SWEEP,
            "hardware=runpod_cpu",
            f"launcher.runpod.api_base={emulator.api_base}",
            f"launcher.runpod.rest_api_base={emulator.rest_api_base}",
            "launcher.runpod.poll_interval_s=0.2",
        ],
        RUNPOD_API_KEY=API_KEY,
        RUNPOD_ENDPOINT_ID=emulator.endpoint_id,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 of 2 trials completed, 0 failed" in out.stdout
    children = _check_sweep(project, monkeypatch)

    monkeypatch.syspath_prepend(str(project))
    bundle = code_bundle({"model": {"_target_": "spirals.net.residual_mlp"}})
    assert bundle is not None and bundle.packages == ("spirals",)
    assert {r.data.tags["hpo.backend"] for r in children} == {"runpod"}
    assert {r.data.tags["hpo.code_sha256"] for r in children} == {bundle.sha256}
    shipped = worker_tmp / CACHE_DIR_NAME / bundle.sha256 / "spirals" / "points.csv"
    assert shipped.read_bytes() == (project / "spirals" / "points.csv").read_bytes(), "data files travel too"
