"""Real sweeps through the CLI: Optuna, the hpo launcher's subprocesses, TensorFlow and MLflow."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO_ROOT, RunHPO
from tests.worker.conftest import write_keras_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _sweep_dir(tmp_path: Path) -> Path:
    (results,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    return results.parent


def test_digits_sweep_records_every_trial_in_mlflow(run_hpo: RunHPO, tmp_path: Path) -> None:
    out = run_hpo(
        [
            "-m",
            "hydra.sweeper.n_trials=3",
            "launcher.workers=2",
            "trainer.max_epochs=2",
            "mlflow.experiment_name=e2e",
        ],
        "-X",
        "importtime",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    driver_imports = re.findall(r"^import time:.*\|\s*(\S+)$", out.stderr, flags=re.M)
    assert {"optuna.distributions", "launchers.local"} <= set(driver_imports), "the trace covers the driver"
    assert not [m for m in driver_imports if m.split(".")[0] in ("tensorflow", "keras")], (
        "the driver process never imports TensorFlow"
    )
    assert "pyarrow.lib" not in driver_imports, "nor pyarrow (tried by pandas: the trace lists tries)"
    assert "3 of 3 trials completed, 0 failed" in out.stdout
    assert "Downloading artifacts" not in out.stderr, "no progress bar per architecture read"
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",), "mlflow.db uses its log"
    assert (tmp_path / "optuna.journal").is_file(), "the study is in the journal file beside the MLflow store"

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 3 and len(runs) == 4
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.params["launcher.workers"] == "2"
    assert parents[0].data.params["search_space.model.filters"].startswith("choice(")
    assert sorted(r.data.tags["hpo.trial_number"] for r in children) == ["0", "1", "2"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"model.conv_layers", "model.filters", "trainer.learning_rate", "trainer.batch_size"} <= set(
            child.data.params
        )
        assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 2

    results = yaml.safe_load((_sweep_dir(tmp_path) / "optimization_results.yaml").read_text())
    best_child = max(children, key=lambda r: r.data.metrics["objective"])
    assert results["n_completed"] == 3 and results["n_failed"] == 0
    assert results["best_value"] == pytest.approx(best_child.data.metrics["objective"])
    assert results["mlflow"]["best_run_id"] == best_child.info.run_id
    assert "model.filters" in results["best_params"]
    assert client.list_artifacts(parents[0].info.run_id)[0].path == "optimization_results.yaml"
    reports = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "reports")}
    assert {"trials.csv", "gallery.html", "optimization_history.png", "report.html"} <= reports, reports
    for trial in range(3):
        assert (_sweep_dir(tmp_path) / f"trial_{trial}" / "hpo.log").exists()

    mlflow.set_tracking_uri(uri)
    model = mlflow.keras.load_model(f"runs:/{best_child.info.run_id}/model")
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (4, 10)


def test_sweep_where_every_trial_fails_says_why(run_hpo: RunHPO, tmp_path: Path) -> None:
    out = run_hpo(["-m", "hydra.sweeper.n_trials=2", "model.conv_layers=5", "trainer.max_epochs=1"])
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: all 2 trials failed; trial #0:")
    assert "model.conv_layers=5 needs an input of at least 32x32" in last
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("hpo").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED", "FAILED"]
    assert yaml.safe_load((_sweep_dir(tmp_path) / "optimization_results.yaml").read_text())["n_failed"] == 2


def test_issue_overrides_on_a_cached_keras_dataset(run_hpo: RunHPO, tmp_path: Path) -> None:
    """The override names users and later tooling rely on, on mnist read from Keras' cache."""
    write_keras_dataset(tmp_path / "keras", "mnist", n_train=100, n_test=20)
    out = run_hpo(
        [
            "-m",
            "dataset=mnist",
            "model=cnn",
            "mode=simple",
            "hardware=cpu",
            "launcher.workers=2",
            "hydra.sweeper.n_trials=2",
            "trainer.max_epochs=1",
            "mlflow.tracking_uri=sqlite:///runs.db",
            "mlflow.experiment_name=demo",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 of 2 trials completed" in out.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2
    assert {r.data.params["dataset"] for r in children} == {"mnist"}
    assert not (tmp_path / "mlflow.db").exists()


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_sweep_cancels_trials_and_records_them(tmp_path: Path, signum: int) -> None:
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpo",
            "-m",
            "hydra.sweeper.n_trials=4",
            "trainer.max_epochs=500",
            "trainer.early_stopping=false",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 240
    running: list[Any] = []
    while len(running) < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(1)
        experiment = client.get_experiment_by_name("hpo") if (tmp_path / "mlflow.db").exists() else None
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
            )
            running = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(running) == 2, "two trials are training when the signal comes"
    processes = _descendants(driver.pid)
    assert processes, "the trials run in child processes"
    driver.send_signal(signum)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-2000:]
    assert "interrupted: running trials were cancelled" in stderr
    runs = client.search_runs([client.get_experiment_by_name("hpo").experiment_id])
    ended = {r.info.run_name: (r.info.status, r.data.tags.get("hpo.error")) for r in runs}
    assert sorted(status for status, _ in ended.values()) == ["KILLED"] * 3, f"parent, both trials: {ended}"
    deadline = time.monotonic() + 15
    while [pid for pid in processes if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in processes if _running(pid)], "no process outlives the sweep"


def test_sweep_started_from_the_repository_root(tmp_path: Path) -> None:
    """From the checkout itself, as the README's first command runs, Hydra's plugin scan re-executes
    modules already imported; job configs must still reach the worker slots."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "-m",
            "hydra.sweeper.n_trials=1",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 of 1 trials completed, 0 failed" in out.stdout
