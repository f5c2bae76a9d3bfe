"""A user's model builder through the CLI: a typo in its ``_target_`` stops the sweep before any trial, and a
builder that returns no Keras model fails its trials with one line while the finished ones are kept."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

BUILDER = """
import keras


def build(input_shape, num_classes, units, give_back):
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    return model if give_back == "model" else {"model": model}
"""
MODEL_CONFIG = """
defaults:
  - /search_space@_global_.hydra.sweeper.params: user_net
  - _self_

_target_: user_nets.models.build
units: 8
give_back: model
"""
SEARCH_SPACE = "model.units: choice(4, 8)\n"


def _project(root: Path) -> None:
    """A user's project: the package ``user_nets`` and a config dir with its model and search space."""
    (root / "user_nets").mkdir()
    (root / "user_nets" / "__init__.py").write_text("")
    (root / "user_nets" / "models.py").write_text(textwrap.dedent(BUILDER))
    for group, text in (("model", MODEL_CONFIG), ("search_space", SEARCH_SPACE)):
        (root / "conf" / group).mkdir(parents=True)
        (root / "conf" / group / "user_net.yaml").write_text(textwrap.dedent(text))


def test_user_model_mistakes_are_one_line_and_keep_finished_trials(run_hpo: RunHPO, tmp_path: Path) -> None:
    _project(tmp_path)
    sweep = [
        "-m",
        "--config-dir",
        "conf",
        "model=user_net",
        "launcher.workers=1",
        "trainer.max_epochs=1",
        "hydra.sweeper.study_name=user",
        "mlflow.log_model=false",
        "mlflow.system_metrics=false",
        "reports.plots=none",
    ]

    typo = run_hpo([*sweep, "model._target_=user_nets.modelz.build"])
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines()[-1] == (
        "error: model._target_=user_nets.modelz.build: no module named 'user_nets.modelz' "
        "(is the folder holding 'user_nets' the directory you run from?)"
    )
    assert not list(tmp_path.glob("multirun/*/*/trial_*")), "the driver refused it before any trial"

    first = run_hpo([*sweep, "hydra.sweeper.n_trials=1"])
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 of 1 trials completed, 0 failed" in first.stdout

    broken = run_hpo(
        [*sweep, "hydra.sweeper.n_trials=2", "hydra.sweeper.max_failure_rate=0", "model.give_back=dict"]
    )
    assert broken.returncode == 2
    last = broken.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 finished trials failed, over hydra.sweeper.max_failure_rate=0")
    assert (
        "trial #1: model._target_=user_nets.models.build returned a dict with keys ['model']: return a "
        "keras.Model (uncompiled: hpo compiles it)" in last
    )

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("hpo").experiment_id])
    trials = {r.data.tags["hpo.trial_number"]: r for r in runs if "hpo.trial_number" in r.data.tags}
    assert trials["0"].info.status == "FINISHED" and "objective" in trials["0"].data.metrics
    assert trials["1"].info.status == "FAILED" and "returned a dict" in trials["1"].data.tags["hpo.error"]
    (results,) = sorted(tmp_path.glob("multirun/*/*/optimization_results.yaml"))[-1:]
    summary = yaml.safe_load(results.read_text())
    assert (summary["n_completed"], summary["n_failed"]) == (1, 1), "the first run's trial is kept"
