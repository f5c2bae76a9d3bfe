"""Pruning through the CLI on each backend that runs here: a pruned trial stops early with the curves of
the epochs it finished, is PRUNED in the study, and its worker takes the next trial."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from hpo.core.names import OPTUNA_STATE_TAG, PRUNED_EPOCH_TAG, PRUNED_TAG
from launchers.runpod.emulator import EmulatorProcess
from tests.conftest import REPO_ROOT, RunHPO

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EPOCHS = 6
# half the trials cannot learn (a learning rate of 1e-7): once a learning one has completed, the percentile
# pruner keeping only the top 1% stops every one that falls behind it at an epoch
PRUNING_ARGS = [
    "hydra.sweeper.n_trials=5",
    "hydra.sweeper.sampler.seed=3",
    "hydra/sweeper/pruner=percentile",
    "hydra.sweeper.pruner.percentile=1.0",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "trainer.learning_rate=choice(0.01,0.0000001)",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.early_stopping=false",
    "model.conv_layers=1",
    "model.filters=8",
    "model.dense_units=16",
    "mlflow.log_model=false",
    "mlflow.experiment_name=prune",
]


def test_a_pruned_local_trial_stops_early_keeps_its_curves_and_its_slot_runs_the_next(
    run_hpo: RunHPO, tmp_path: Path
) -> None:
    out = run_hpo(["-m", "launcher.workers=2", *PRUNING_ARGS])
    assert out.returncode == 0, out.stderr[-3000:]
    check_pruned_runs(tmp_path)
    slots = {
        int(m)
        for log in tmp_path.glob("multirun/**/.jobs/*/job.log")
        for m in re.findall(r"in slot process (\d+)", log.read_text())
    }
    assert len(slots) == 2, "two slot processes ran every trial: none was replaced after a prune"


def test_pruning_over_the_emulator_stops_the_workers_training_within_a_batch_and_keeps_the_worker(
    run_hpo: RunHPO, tmp_path: Path
) -> None:
    api_key = "rp-prune-KEY-0123456789abcdef"
    logs = tmp_path / "emulator"
    env = {"PYTHONPATH": str(REPO_ROOT), "KERAS_HOME": str(tmp_path / "keras")}
    with EmulatorProcess(workers=2, gpu_count=0, api_key=api_key, log_dir=logs, env=env) as emulator:
        pids = sorted(emulator.wait_workers()["worker_pids"])
        args = [
            "-m",
            "hardware=runpod_cpu",
            f"launcher.runpod.api_base={emulator.api_base}",
            f"launcher.runpod.rest_api_base={emulator.rest_api_base}",
            "launcher.runpod.poll_interval_s=0.2",
            "launcher.workers=2",
            *PRUNING_ARGS,
        ]
        out = run_hpo(args, RUNPOD_API_KEY=api_key, RUNPOD_ENDPOINT_ID=emulator.endpoint_id)
        assert out.returncode == 0, out.stderr[-3000:]
        assert sorted(emulator.worker_pids()) == pids, "a prune ends the job, not the worker"
    pruned = check_pruned_runs(tmp_path)
    worker_logs = "".join(p.read_text(errors="replace") for p in logs.glob("w*-*.log"))
    stopped = [int(n) for n in re.findall(r"stopped after (\d+) batch\(es\)", worker_logs)]
    assert len(stopped) == len(pruned) and all(n <= 1 for n in stopped), (
        "each pruned trial's worker left training within a batch of the stop"
    )


def check_pruned_runs(tmp_path: Path) -> list[Run]:
    """The sweep's pruned runs, each checked: stopped early, FINISHED with the curves of the epochs it
    finished, and PRUNED in the study as in its tag."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prune").experiment_id])
    pruned = [r for r in runs if r.data.tags.get(PRUNED_TAG) == "true"]
    assert pruned, "a trial that cannot learn falls behind the learning one and is pruned"
    for run in pruned:
        epoch = int(run.data.tags[PRUNED_EPOCH_TAG])
        assert 1 <= epoch < EPOCHS, "stopped early, after the epoch the pruner judged"
        assert run.info.status == "FINISHED" and run.data.tags[OPTUNA_STATE_TAG] == "PRUNED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(epoch)), "the curves of the epochs it finished, and no later one"

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert {int(r.data.tags["hpo.trial_number"]) for r in pruned} == {
        t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED
    }
    return pruned
