"""Sweep reports and best-model registration against a real Optuna study and a real MLflow SQLite store."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from hpo.core.names import OPTUNA_STATE_TAG
from hpo.records.registry import RegistryError, register_best, registry_name
from hpo.reports import sweep_report as reports
from hpo.reports.plots import PAGE_FILE, PLOTS, PNG_PLOTS
from hpo.reports.sweep_report import CSV_FILE, REPORTS_DIR, ChildRuns, LiveReport, SweepReport
from tests.hpo.reports.fake_sweep import build_sweep, new_store, score


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return new_store(tmp_path)


def _rows(path: Path) -> dict[int, dict[str, str]]:
    with path.open() as f:
        return {int(row["number"]): row for row in csv.DictReader(f)}


@pytest.mark.parametrize("with_study", [True, False], ids=["study", "mlflow-only"])
def test_report_files_csv_and_parent_metrics(tracking_uri: str, tmp_path: Path, with_study: bool) -> None:
    # 5 completed trials: more than the 4 parameters, as fANOVA's importances need
    sweep = build_sweep(tracking_uri, "sweep-a", 7, failed=(1, 4))
    client = MlflowClient(tracking_uri)
    report = SweepReport.collect(sweep.study if with_study else None, client, sweep.parent_run_id)
    assert (report.objective, report.direction) == ("val_accuracy", "maximize")
    out = tmp_path / "reports"
    report.write(out)
    report.publish(client, sweep.parent_run_id)

    published = {a.path for a in client.list_artifacts(sweep.parent_run_id, REPORTS_DIR)}
    expected = {f"{REPORTS_DIR}/{name}.html" for name in PLOTS} | {
        f"{REPORTS_DIR}/{name}.png" for name in PNG_PLOTS
    }
    assert published == {*expected, f"{REPORTS_DIR}/{CSV_FILE}", f"{REPORTS_DIR}/{PAGE_FILE}"}
    assert f"{REPORTS_DIR}/slice.png" not in published, "the slice plot is HTML only"
    assert report.skipped == {}
    assert (out / "param_importances.png").read_bytes()[:4] == b"\x89PNG"
    assert "Plotly.newPlot" in (out / PAGE_FILE).read_text()

    rows = _rows(out / CSV_FILE)
    assert sorted(rows) == list(range(7))
    for trial in sweep.study.trials:
        row = rows[trial.number]
        assert row["state"] == trial.state.name
        assert row["run_id"] == sweep.run_ids[trial.number]
        assert float(row["cost_usd"]) == pytest.approx(0.001 * (trial.number + 1))
        assert int(row["params.model.filters"]) == trial.params["model.filters"]
        assert row["params.dataset"] == "digits", "fixed overrides are kept beside the searched params"
        assert float(row["params.trainer.learning_rate"]) == trial.params["trainer.learning_rate"]
        if trial.value is None:
            assert row["objective"] == "" and "boom" in row["error"]
        else:
            assert float(row["objective"]) == trial.value == score(trial.params)

    history = client.get_metric_history(sweep.parent_run_id, "best_value")
    steps = [m.step for m in sorted(history, key=lambda m: m.step)]
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert steps == list(range(7)) and values == sorted(values)
    assert values[-1] == sweep.study.best_value
    metrics = client.get_run(sweep.parent_run_id).data.metrics
    assert (metrics["trials_completed"], metrics["trials_failed"]) == (5, 2)
    assert metrics["cost_usd_total"] == pytest.approx(0.028)

    report.publish(client, sweep.parent_run_id)
    assert len(client.get_metric_history(sweep.parent_run_id, "best_value")) == 7, "published steps stay put"
    assert len(client.get_metric_history(sweep.parent_run_id, "trials_completed")) == 1


def test_importances_agree_with_and_without_the_study(tracking_uri: str) -> None:
    sweep = build_sweep(tracking_uri, "sweep-b", 12, failed=())
    client = MlflowClient(tracking_uri)
    real = SweepReport.collect(sweep.study, client, sweep.parent_run_id)
    rebuilt = SweepReport.collect(None, client, sweep.parent_run_id)
    assert set(real.importances) == set(rebuilt.importances) == set(sweep.study.best_params)
    assert sum(real.importances.values()) == pytest.approx(1.0)
    assert rebuilt.varying_params() == sorted(sweep.study.best_params), "a fixed override is not searched"
    assert [t.number for t in real.best(2)] == [t.number for t in rebuilt.best(2)]
    assert real.best(1)[0].number == sweep.study.best_trial.number


def test_running_trials_hold_back_best_value_steps(tracking_uri: str, tmp_path: Path) -> None:
    sweep = build_sweep(tracking_uri, "sweep-c", 5, failed=(0,), running=(2,))
    client = MlflowClient(tracking_uri)
    live = LiveReport(client, sweep.parent_run_id, tmp_path / "reports", plot_interval_s=3600)
    first = live.refresh(sweep.study)
    assert [t.state for t in first.trials] == ["FAIL", "COMPLETE", "RUNNING", "COMPLETE", "COMPLETE"]
    assert [m.step for m in client.get_metric_history(sweep.parent_run_id, "best_value")] == [1]
    drawn = {tmp_path / "reports" / f"{name}.html" for name in PLOTS if name != "param_importances"}
    assert set(first.written) >= drawn and "param_importances" in first.skipped, "3 trials, 4 parameters"

    second = live.refresh(sweep.study)
    assert second.written == [tmp_path / "reports" / CSV_FILE], "plots wait for plot_interval_s"
    second.publish(client, sweep.parent_run_id, final=True)
    assert len(client.get_metric_history(sweep.parent_run_id, "best_value")) == 1, "a resumed study runs #2"

    sweep.study.tell(2, 1.0)
    client.log_metric(sweep.run_ids[2], "objective", 1.0)
    client.set_terminated(sweep.run_ids[2], "FINISHED")
    live.refresh(sweep.study)
    history = sorted(client.get_metric_history(sweep.parent_run_id, "best_value"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history][1:] == [(2, 1.0), (3, 1.0), (4, 1.0)]


def test_the_told_state_and_study_attributes_fill_in(tracking_uri: str, tmp_path: Path) -> None:
    sweep = build_sweep(tracking_uri, "sweep-f", 3, failed=())
    client = MlflowClient(tracking_uri)
    client.set_tag(sweep.run_ids[1], "hpo.optuna_state", "FAIL")
    lost = sweep.study.ask()  # a trial with no run: its job was lost before it started
    lost.set_user_attr("hpo.error", "job lost")
    lost.set_user_attr("hpo.cost_usd", 0.5)
    sweep.study.tell(lost, state=optuna.trial.TrialState.FAIL)
    without_study = SweepReport.collect(None, client, sweep.parent_run_id)
    assert [t.state for t in without_study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    with_study = SweepReport.collect(sweep.study, client, sweep.parent_run_id)
    row = with_study.trials[lost.number]
    assert (row.state, row.run_id, row.error, row.cost_usd) == ("FAIL", None, "job lost", 0.5)
    assert with_study.cost_usd_total == pytest.approx(0.5 + 0.001 + 0.002 + 0.003)


def test_too_few_trials_skip_the_plots_that_need_more(tracking_uri: str, tmp_path: Path) -> None:
    sweep = build_sweep(tracking_uri, "sweep-d", 2, failed=(1,))
    report = SweepReport.collect(sweep.study, MlflowClient(tracking_uri), sweep.parent_run_id)
    names = {p.name for p in report.write(tmp_path)}
    assert "param_importances" in report.skipped and report.importances == {}
    assert {"trials.csv", "optimization_history.png", "report.html"} <= names
    assert "param_importances.png" not in names


def test_no_importances_from_fewer_completed_trials_than_parameters(tracking_uri: str) -> None:
    sweep = build_sweep(tracking_uri, "sweep-few", 5, failed=(1,))
    report = SweepReport.collect(sweep.study, MlflowClient(tracking_uri), sweep.parent_run_id)
    assert len(report.completed) == len(report.varying_params()) == 4
    assert report.importances == {}
    assert report.skipped["param_importances"] == (
        "needs more completed trials (4) than varying parameters (4)"
    )


def test_best_model_registers_and_loads(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = build_sweep(tracking_uri, "digits sweep/1", 3, failed=())
    best_run = sweep.run_ids[sweep.study.best_trial.number]
    client = MlflowClient(tracking_uri)
    client.log_param(best_run, "model.filters", str(sweep.study.best_params["model.filters"]))
    x = np.arange(24, dtype=float).reshape(8, 3)
    model = _fit(x)
    # mlflow's fluent API (log_model, load_model) reads the global URIs; the test's are undone afterwards.
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", tracking_uri)
    monkeypatch.setattr("mlflow.tracking._model_registry.utils._registry_uri", None)
    with mlflow.start_run(run_id=best_run):
        mlflow.sklearn.log_model(model, name="model", pip_requirements=[])
    registered = register_best(tracking_uri, best_run)
    assert registered.name == registry_name("digits sweep/1") == "digits-sweep-1-best"
    loaded = mlflow.pyfunc.load_model(f"models:/{registered.name}/latest")
    assert (loaded.predict(x) == model.predict(x)).all()
    version = client.get_model_version(registered.name, str(registered.version))
    assert version.run_id == best_run
    assert f"model.filters: {sweep.study.best_params['model.filters']}" in str(version.description)
    assert f"objective: {sweep.study.best_value:.6g}" in str(version.description)
    assert register_best(tracking_uri, best_run).version == registered.version + 1


def test_registration_errors_say_what_to_do(tracking_uri: str) -> None:
    sweep = build_sweep(tracking_uri, "sweep-e", 1, failed=())
    with pytest.raises(RegistryError, match="logged no 'model'.*mlflow.log_model=true"):
        register_best(tracking_uri, sweep.run_ids[0])
    with pytest.raises(RegistryError, match="no run nope in the MLflow store"):
        register_best(tracking_uri, "nope")
    with pytest.raises(RegistryError, match="cannot host a Model Registry"):
        register_best("nosuchscheme://store", "nope")


def _fit(x: np.ndarray) -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(x, x.sum(axis=1))


def test_child_runs_are_read_again_only_while_they_can_change(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports, "START_MARGIN_MS", 0)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("sweep-g")
    parent_id = client.create_run(experiment_id).info.run_id

    def child(number: int, start_ms: int, state: str | None = None) -> str:
        tags = {"mlflow.parentRunId": parent_id, "hpo.trial_number": str(number)}
        tags.update({OPTUNA_STATE_TAG: state} if state else {})
        run_id = client.create_run(experiment_id, start_time=start_ms, tags=tags).info.run_id
        if state:
            client.set_terminated(run_id)
        return run_id

    told, running = child(0, 1_000, "COMPLETE"), child(1, 2_000)
    fetched: list[list[int]] = []
    search = client.search_runs

    def counting(*args: Any, **kwargs: Any) -> Any:
        runs = search(*args, **kwargs)
        fetched.append(sorted(int(run.data.tags["hpo.trial_number"]) for run in runs))
        return runs

    monkeypatch.setattr(client, "search_runs", counting)
    children, parent = ChildRuns(client), client.get_run(parent_id)
    assert sorted(children.read(parent)) == [0, 1]

    client.set_tag(running, OPTUNA_STATE_TAG, "COMPLETE")
    child(2, 3_000)
    runs = children.read(parent)
    assert sorted(runs) == [0, 1, 2] and runs[0].info.run_id == told
    assert fetched == [[0, 1], [1, 2]], "a settled run is not read again"
    client.log_metric(running, "objective", 0.5)
    client.set_terminated(running)
    runs = children.read(parent)
    assert runs[1].data.metrics["objective"] == 0.5, "a tagged run still running is read again"
    assert fetched[-1] == [1, 2]
    children.read(parent)
    assert fetched[-1] == [2], "once the earlier runs settle, only the newer ones are read"
