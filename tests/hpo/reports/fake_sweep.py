"""A real Optuna study and MLflow parent run with child runs, shaped like a finished hpo sweep."""

from __future__ import annotations

import atexit
import functools
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

SPACE = {
    "model.filters": IntDistribution(8, 64, log=True),
    "model.dropout": FloatDistribution(0.0, 0.5),
    "trainer.learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "model.activation": CategoricalDistribution(["relu", "tanh"]),
}


@dataclass
class FakeSweep:
    """What a test needs to know about the sweep it built."""

    tracking_uri: str
    experiment_name: str
    parent_run_id: str
    study: optuna.Study
    run_ids: dict[int, str]


@functools.cache
def _template() -> Path:
    """An empty MLflow SQLite store, created once per process: creating its schema takes seconds."""
    folder = tempfile.mkdtemp(prefix="hpo-mlflow-template-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def new_store(folder: Path) -> str:
    """A fresh, empty MLflow SQLite store in ``folder``; returns its tracking URI."""
    shutil.copy(_template(), folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def score(params: dict[str, object]) -> float:
    """A deterministic objective that depends on every parameter."""
    lr = float(params["trainer.learning_rate"])  # type: ignore[arg-type]
    filters = int(params["model.filters"])  # type: ignore[call-overload]
    dropout = float(params["model.dropout"])  # type: ignore[arg-type]
    return (
        0.5
        + 0.1 * math.log2(filters) / 6
        - abs(math.log10(lr) + 3) / 20
        - dropout / 10
        + (0.05 if params["model.activation"] == "relu" else 0.0)
    )


def build_sweep(
    tracking_uri: str,
    experiment_name: str,
    n_trials: int,
    *,
    failed: tuple[int, ...] = (1,),
    storage: str | None = None,
    running: tuple[int, ...] = (),
) -> FakeSweep:
    """``n_trials`` trials: those in ``failed`` fail, those in ``running`` still run, the rest score."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=experiment_name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=n_trials),
    )
    client = MlflowClient(tracking_uri)
    artifacts = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlruns").as_uri()
    experiment_id = client.create_experiment(experiment_name, artifact_location=artifacts)
    parent = client.create_run(experiment_id, run_name="sweep", tags={"hpo.kind": "sweep"})
    parent_id = parent.info.run_id
    client.log_batch(
        parent_id, params=[Param("mode.objective", "val_accuracy"), Param("mode.direction", "maximize")]
    )
    run_ids: dict[int, str] = {}
    for _ in range(n_trials):
        trial = study.ask(SPACE)
        overrides = ["dataset=digits", *(f"{k}={v}" for k, v in trial.params.items())]
        tags = {
            "mlflow.parentRunId": parent_id,
            "hpo.trial_number": str(trial.number),
            "hpo.overrides": json.dumps(overrides),
        }
        run_id = client.create_run(experiment_id, run_name=f"trial-{trial.number}", tags=tags).info.run_id
        run_ids[trial.number] = run_id
        if trial.number in running:
            continue
        cost = 0.001 * (trial.number + 1)
        metrics = [Metric("fit_s", 1.5 + trial.number, 0, 0), Metric("cost_usd", cost, 0, 0)]
        if trial.number in failed:
            client.set_tag(run_id, "hpo.error", f"trial {trial.number} failed: boom")
            client.log_batch(run_id, metrics=metrics)
            client.set_terminated(run_id, "FAILED")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        value = score(trial.params)
        client.log_batch(run_id, metrics=[*metrics, Metric("objective", value, 0, 0)])
        client.set_terminated(run_id, "FINISHED")
        study.tell(trial, value)
    return FakeSweep(tracking_uri, experiment_name, parent_id, study, run_ids)
