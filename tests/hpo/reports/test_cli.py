"""``python -m hpo.reports`` as a user meets it: a summary of a recorded sweep, or one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from hpo.reports.cli import main
from hpo.reports.results import RESULTS_FILE
from hpo.reports.sweep_report import REPORTS_DIR
from tests.conftest import REPO_ROOT
from tests.hpo.reports.fake_sweep import FakeSweep, build_sweep, new_store


def _sweep_dir(folder: Path, sweep: FakeSweep, storage: str | None) -> Path:
    """A sweep directory whose results file points at the sweep's parent run and, maybe, its study."""
    folder.mkdir()
    results = {
        "objective": "val_accuracy",
        "direction": "maximize",
        "mlflow": {
            "tracking_uri": sweep.tracking_uri,
            "experiment_name": sweep.experiment_name,
            "parent_run_id": sweep.parent_run_id,
        },
    }
    if storage:
        results["study"] = {"storage": storage, "study_name": sweep.study.study_name}
    (folder / RESULTS_FILE).write_text(yaml.safe_dump(results))
    return folder


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_publishes_and_prints_the_best_without_tensorflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = build_sweep(new_store(tmp_path), "cli", 8, failed=(2,), storage=storage)
    folder = _sweep_dir(tmp_path / "sweep", sweep, storage)
    before = set(sys.modules)
    assert main([str(folder), "--top", "3"]) == 0
    imported = {name.split(".")[0] for name in set(sys.modules) - before}
    assert not imported & {"tensorflow", "keras"}, "the report never imports TensorFlow"
    out = capsys.readouterr().out
    best = sweep.study.best_trial
    lines = out.splitlines()
    assert lines[0] == f"{folder}: 8 trials, 7 completed, 1 failed, $0.0360"
    first = next(ln.split() for ln in lines if ln.strip().startswith("1 "))
    assert first[:3] == ["1", str(best.number), f"{best.value:.6g}"]
    assert "parameter importances (fANOVA)" in out and "model.activation" in out
    assert not any(c in out for c in "│━┃─"), "plain text when stdout is not a terminal"
    client = MlflowClient(sweep.tracking_uri)
    assert {a.path for a in client.list_artifacts(sweep.parent_run_id, REPORTS_DIR)} >= {
        f"{REPORTS_DIR}/trials.csv",
        f"{REPORTS_DIR}/report.html",
        f"{REPORTS_DIR}/slice.html",
        f"{REPORTS_DIR}/optimization_history.png",
    }
    assert client.get_run(sweep.parent_run_id).data.metrics["best_value"] == best.value
    assert (folder / REPORTS_DIR / "trials.csv").is_file()


def test_cli_without_a_study_reports_from_mlflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = build_sweep(new_store(tmp_path), "cli-mlflow", 4, failed=())
    folder = _sweep_dir(tmp_path / "sweep", sweep, None)
    assert main([str(folder / RESULTS_FILE), "--top", "2", "--no-publish", "--no-plots"]) == 0
    out = capsys.readouterr().out
    best = sweep.study.best_trial
    assert f"{best.value:.6g}" in out and f"model.filters={best.params['model.filters']}" in out
    assert not MlflowClient(sweep.tracking_uri).list_artifacts(sweep.parent_run_id), (
        "--no-publish logs nothing"
    )
    assert [p.name for p in (folder / REPORTS_DIR).iterdir()] == ["trials.csv"], "--no-plots draws none"


def test_cli_finds_the_parent_run_from_a_storage_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = build_sweep(new_store(tmp_path), "cli-storage", 3, failed=(), storage=storage)
    sweep.study.set_user_attr("hpo.tracking_uri", sweep.tracking_uri)
    sweep.study.set_user_attr("hpo.parent_run_id", sweep.parent_run_id)
    sweep.study.set_user_attr("hpo.objective", "val_loss")
    out_dir = tmp_path / "out"
    assert main([storage, "--out", str(out_dir), "--no-plots"]) == 0, "the storage's only study is picked"
    out = capsys.readouterr().out
    assert "best trials by val_loss (maximize)" in out and sweep.parent_run_id in out
    runs = MlflowClient(sweep.tracking_uri).list_artifacts(sweep.parent_run_id, REPORTS_DIR)
    assert [a.path for a in runs] == [f"{REPORTS_DIR}/trials.csv"]


def test_missing_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = _run("-m", "hpo.reports", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"error: no sweep directory at {tmp_path / 'nope'}"]
    assert out.stdout == ""


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no-results", f"holds no {RESULTS_FILE}: pass the directory of a finished sweep"),
        ("missing-store", "no MLflow store at sqlite:///"),
        ("unknown-run", "no parent run deadbeef in sqlite:///"),
        ("missing-study", "has no study 'other' (studies: kept)"),
    ],
    ids=["no-results", "missing-store", "unknown-run", "missing-study"],
)
def test_bad_targets_are_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    expected: str,
) -> None:
    monkeypatch.delenv("HPO_DEBUG", raising=False)
    folder = tmp_path / "sweep"
    folder.mkdir()
    target = [str(folder)]
    if case in ("missing-store", "unknown-run"):
        uri = new_store(tmp_path) if case == "unknown-run" else f"sqlite:///{tmp_path / 'gone.db'}"
        mlflow_info = {"tracking_uri": uri, "parent_run_id": "deadbeef"}
        (folder / RESULTS_FILE).write_text(yaml.safe_dump({"mlflow": mlflow_info}))
    elif case == "missing-study":
        import optuna

        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        optuna.create_study(study_name="kept", storage=storage)
        target = [storage, "--study", "other"]
    assert main(target) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err
    assert not (tmp_path / "gone.db").exists(), "a missing store is not created empty"
