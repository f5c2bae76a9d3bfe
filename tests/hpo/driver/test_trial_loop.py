"""The asynchronous ask-and-tell loop, on hpo's real config, launcher, study and MLflow parent run, with
jobs run in threads so that each test takes seconds."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra.core.plugins import Plugins
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hpo.core.code_version import code_version
from hpo.core.errors import DatasetError, HPOError
from hpo.core.names import ERROR_TAG, OPTUNA_STATE_TAG
from hpo.driver.live import EVENTS_FILE, EventLog, SweepView
from hpo.driver.search_space import SearchSpace
from hpo.driver.study import COST_ATTR, StudyState, StudyWrittenElsewhere, open_study
from hpo.driver.sweep_run import Sweep
from hpo.driver.trial_loop import LoopRules, TrialLoop
from launchers.hydra_job import JobSpec
from launchers.launcher import HPOLauncher
from tests.hpo.driver.sweep_config import Rig, compose_sweep
from tests.launchers.thread_backend import ThreadBackend

SPACE = {"trainer.learning_rate": "interval(0.0, 1.0)"}


def _ask(study: optuna.Study) -> optuna.Trial:
    """Ask a trial the way hpo's sweeper does."""
    trial = study.ask()
    trial.suggest_float("trainer.learning_rate", 0.0, 1.0)
    return trial


def _open(storage: str) -> optuna.Study:
    """The study in ``storage`` as a driver opens it (a journal file, the default storage)."""
    return open_study("s", storage, optuna.samplers.RandomSampler(seed=0), ["maximize"])


@pytest.fixture
def rig(tmp_path: Path, tracking_uri: str, hydra_restore_singletons: Any) -> Callable[..., Rig]:
    """Build a loop over a new study: ``task(spec, cancelled)`` runs each trial in a thread."""

    def build(
        task: Callable[[JobSpec, threading.Event], Any],
        *,
        n_trials: int,
        workers: int = 2,
        max_failure_rate: float = 1.0,
        budget_usd: float | None = None,
        cost_usd: float | None = None,
        study: optuna.Study | None = None,
        final_plots: bool = False,
    ) -> Rig:
        cfg, context = compose_sweep(
            tmp_path,
            f"mlflow.tracking_uri={tracking_uri}",
            f"mlflow.experiment_name=loop-{tmp_path.name}",
            f"launcher.workers={workers}",
            "hydra.launcher.poll_interval_s=0.02",
        )
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=lambda c: None, config=cfg
        )
        assert isinstance(launcher, HPOLauncher)
        backend = ThreadBackend(task, cost_usd)
        launcher.open(backend=backend)
        sampler = optuna.samplers.RandomSampler(seed=0)
        impl = OptunaSweeperImpl(
            sampler,
            "maximize",
            None,
            None,
            n_trials,
            workers,
            max_failure_rate,
            None,
            None,
            OmegaConf.create(SPACE),
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = study or optuna.create_study(direction="maximize", sampler=sampler)
        sweep = Sweep(
            cfg, study={"study_name": study.study_name, "storage": "memory"}, final_plots=final_plots
        )
        loop = TrialLoop(
            study,
            launcher,
            SearchSpace.parse(impl, []),
            LoopRules(n_trials, max_failure_rate, budget_usd),
            sweep,
            SweepView("objective", live=False),
            EventLog(sweep.sweep_dir),
            StudyState.of(study),
        )
        return Rig(study, backend, sweep, loop)

    return build


def _lr(spec: JobSpec) -> float:
    return float(spec.config.trainer.learning_rate)


def _events(rig: Rig) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (rig.sweep.sweep_dir / EVENTS_FILE).read_text().splitlines()]


def test_a_finished_trial_is_replaced_at_once(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        time.sleep(0.1 + 0.8 * (spec.num % 3))  # uneven durations: a batch would wait for the slowest
        return _lr(spec)

    r = rig(task, n_trials=9, workers=3)
    r.loop.run()
    assert [t.state for t in r.study.trials] == [TrialState.COMPLETE] * 9
    events = _events(r)
    running, submitted, gaps = 0, 0, []
    for before, after in zip(events, events[1:], strict=False):
        running += 1 if before["event"] == "submit" else -1
        submitted += before["event"] == "submit"
        assert running <= 3
        if submitted >= 3 and submitted < 9 and running < 3:
            gaps.append(after["t"] - before["t"])
    assert gaps and max(gaps) < 0.5, f"a freed slot waits for the next trial: {gaps}"
    assert sorted(spec.num for spec in r.backend.submitted) == list(range(9)), "job number = trial number"


def test_nan_and_raising_trials_are_failed_trials(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num == 1:
            return math.nan
        if spec.num == 2:
            raise ValueError("trial two is broken")
        return _lr(spec)

    r = rig(task, n_trials=5)
    r.loop.run()
    states = {t.number: t.state for t in r.study.trials}
    assert states == {
        0: TrialState.COMPLETE,
        1: TrialState.FAIL,
        2: TrialState.FAIL,
        3: TrialState.COMPLETE,
        4: TrialState.COMPLETE,
    }
    errors = {t.number: t.user_attrs.get(ERROR_TAG) for t in r.study.trials}
    assert errors[1] == "returned nan (not finite)"
    assert errors[2] == "trial two is broken"


def test_the_failure_rate_counts_the_whole_study_and_stops_it(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num >= 3:
            cancelled.wait(5)  # a slow trial still running when the sweep stops
        if spec.num in (1, 2):
            raise ValueError(f"trial {spec.num} is broken")
        return _lr(spec)

    r = rig(task, n_trials=10, workers=2, max_failure_rate=0.5)
    with pytest.raises(
        HPOError, match=r"2 of 3 finished trials failed, over hydra.sweeper.max_failure_rate=0.5"
    ):
        r.loop.run()
    states = [t.state for t in r.study.trials]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.COMPLETE) == 1
    assert TrialState.RUNNING in states, "the cancelled trial stays RUNNING, to run again on resume"
    assert len(states) < 10


def test_a_dataset_no_trial_can_load_stops_the_sweep_at_the_first(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num == 0:
            raise DatasetError("dataset 'cifar10' is not in the Keras cache and fetching it failed")
        cancelled.wait(5)
        return _lr(spec)

    r = rig(task, n_trials=20, workers=2)
    with pytest.raises(HPOError, match=r"the sweep stopped: trial #0 could not load the dataset .*'cifar10'"):
        r.loop.run()
    states = [t.state for t in r.study.trials]
    assert states[0] == TrialState.FAIL and len(states) < 5, "no further trial meets the same failure"


def test_one_early_failure_does_not_stop_the_sweep(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num == 0:
            raise ValueError("the first trial is broken")
        time.sleep(0.2)
        return _lr(spec)

    r = rig(task, n_trials=6, workers=3, max_failure_rate=0.4)
    r.loop.run()
    assert [t.state for t in r.study.trials].count(TrialState.COMPLETE) == 5


def test_the_budget_stops_new_trials(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        time.sleep(0.1 * (spec.num + 1))
        return _lr(spec)

    r = rig(task, n_trials=10, workers=2, budget_usd=3.5, cost_usd=1.0)
    r.loop.run()
    costs = [t.user_attrs[COST_ATTR] for t in r.study.trials]
    assert len(costs) == 3 and sum(costs) <= 3.5


def test_trials_left_running_are_run_again_as_the_same_trials(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    storage = str(tmp_path / "optuna.journal")
    study = _open(storage)
    done = _ask(study)
    study.tell(done, 0.5)
    left = _ask(study)
    lr = left.params["trainer.learning_rate"]

    r = rig(
        lambda spec, cancelled: _lr(spec),
        n_trials=4,
        study=_open(storage),
    )
    r.loop.run()
    trials = _open(storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert trials[1].params["trainer.learning_rate"] == lr and trials[1].value == pytest.approx(lr)
    assert [spec.num for spec in r.backend.submitted] == [1, 2, 3], "the completed trial is not run again"


def test_a_trial_that_finished_after_its_driver_died_is_not_run_again(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    storage = str(tmp_path / "optuna.journal")
    study = _open(storage)
    _ask(study)
    r = rig(
        lambda spec, cancelled: _lr(spec),
        n_trials=2,
        study=_open(storage),
    )
    client = MlflowClient(r.sweep.tracking_uri)
    run = client.create_run(
        r.sweep.parent.experiment_id,
        tags={"mlflow.parentRunId": r.sweep.parent.run_id, "hpo.trial_number": "0"},
    )
    client.log_metric(run.info.run_id, "objective", 0.75)
    client.set_terminated(run.info.run_id, "FINISHED")

    r.loop.run()
    trials = _open(storage).trials
    assert [t.value for t in trials][0] == 0.75 and [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert [spec.num for spec in r.backend.submitted] == [1]
    assert client.get_run(run.info.run_id).data.tags[OPTUNA_STATE_TAG] == "COMPLETE"


def test_the_next_trial_is_ready_before_a_slot_frees(rig: Callable[..., Rig]) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        time.sleep(0.3)
        return _lr(spec)

    r = rig(task, n_trials=5, workers=2)
    r.loop.run()
    trials = r.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5, "no trial asked beyond n_trials"
    first_told = min(t.datetime_complete for t in trials[:2] if t.datetime_complete)
    assert trials[2].datetime_start and trials[2].datetime_start < first_told, "asked while both slots ran"


def test_a_trial_asked_ahead_is_run_after_an_interruption(
    rig: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = str(tmp_path / "optuna.journal")
    resumed = threading.Event()

    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if not resumed.is_set():
            cancelled.wait(5)
        return _lr(spec)

    r = rig(task, n_trials=4, study=_open(storage))
    with monkeypatch.context() as patch:
        patch.setattr(r.loop.launcher, "wait", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            r.loop.run()
    study = _open(storage)
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 3, "two started, one asked ahead"
    assert [spec.num for spec in r.backend.submitted] == [0, 1]

    resumed.set()
    rules = LoopRules(4, 1.0)
    view, events = SweepView("objective", live=False), EventLog(r.sweep.sweep_dir)
    TrialLoop(study, r.loop.launcher, r.loop.space, rules, r.sweep, view, events, StudyState.of(study)).run()
    trials = _open(storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [spec.num for spec in r.backend.submitted] == [0, 1, 0, 1, 2, 3], "the same trials, then the last"


def test_a_second_sweep_of_the_same_study_stops_the_first(rig: Callable[..., Rig], tmp_path: Path) -> None:
    storage = str(tmp_path / "optuna.journal")

    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num == 0:
            other = _open(storage)  # another driver's, asking a trial while this one runs trial #0
            while len(other.trials) < 2:  # once this driver asked #1 ahead
                time.sleep(0.01)
            other.ask()
        return _lr(spec)

    r = rig(task, n_trials=4, workers=1, study=_open(storage))
    with pytest.raises(StudyWrittenElsewhere, match=r"another process .*trial #3 came after #1"):
        r.loop.run()
    assert [spec.num for spec in r.backend.submitted] == [0, 1], "#1 was asked before the other's trial"


def test_the_parent_run_names_the_code_version(rig: Callable[..., Rig]) -> None:
    r = rig(lambda spec, cancelled: _lr(spec), n_trials=1)
    tags = MlflowClient(r.sweep.tracking_uri).get_run(r.sweep.parent.run_id).data.tags
    assert tags.get("hpo.code_version") == code_version(), "the checkout's commit, when there is one"


def test_the_final_reports_are_in_the_parent_run_when_the_sweep_closes(rig: Callable[..., Rig]) -> None:
    r = rig(lambda spec, cancelled: _lr(spec), n_trials=3, final_plots=True)
    r.loop.run()
    r.sweep.close("FINISHED")
    client = r.sweep.parent.client
    logged = {Path(a.path).name for a in client.list_artifacts(r.sweep.parent.run_id, "reports")}
    assert {"trials.csv", "optimization_history.html", "optimization_history.png", "report.html"} <= logged
    assert client.get_run(r.sweep.parent.run_id).data.metrics["trials_completed"] == 3
    history = client.get_metric_history(r.sweep.parent.run_id, "best_value")
    assert [m.step for m in history] == [0, 1, 2]


def test_final_reports_that_fail_are_a_warning_naming_the_command_that_draws_them(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hpo.reports import plots

    def broken() -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "warm_up", broken)
    r = rig(lambda spec, cancelled: _lr(spec), n_trials=2, final_plots=True)
    r.loop.run()
    r.sweep.close("FINISHED")
    warning = "final sweep reports not drawn (RuntimeError: no fonts); run: python -m hpo.reports"
    assert f"{warning} {r.sweep.sweep_dir}" in caplog.text
    assert r.sweep.parent.client.get_run(r.sweep.parent.run_id).info.status == "FINISHED"


def test_the_run_a_job_names_is_tagged_with_its_state(rig: Callable[..., Rig], tracking_uri: str) -> None:
    r = rig(lambda spec, cancelled: _lr(spec), n_trials=1, workers=1)
    client = MlflowClient(tracking_uri)
    tags = {"mlflow.parentRunId": r.sweep.parent.run_id, "hpo.trial_number": "0"}
    own = client.create_run(r.sweep.parent.experiment_id, tags=tags).info.run_id
    stray = client.create_run(r.sweep.parent.experiment_id, tags=tags).info.run_id
    submit = r.backend.submit

    def submit_naming_its_run(spec: JobSpec, slot: int) -> Any:
        handle = submit(spec, slot)
        handle.run_id = own
        return handle

    r.backend.submit = submit_naming_its_run  # type: ignore[method-assign]
    r.loop.run()
    assert client.get_run(own).data.tags[OPTUNA_STATE_TAG] == "COMPLETE"
    assert OPTUNA_STATE_TAG not in client.get_run(stray).data.tags, "no search: the job named its run"


@pytest.mark.parametrize(("value", "written"), [(0.5, []), (math.nan, [(0, "FAIL")])])
def test_the_state_is_tagged_again_only_when_the_backend_tagged_another(
    rig: Callable[..., Rig], value: float, written: list[tuple[int, str]]
) -> None:
    r = rig(lambda spec, cancelled: value, n_trials=1, workers=1)
    submit, tagged = r.backend.submit, []

    def submit_tagging_complete(spec: JobSpec, slot: int) -> Any:
        handle = submit(spec, slot)
        handle.optuna_state = "COMPLETE"
        return handle

    r.backend.submit = submit_tagging_complete  # type: ignore[method-assign]
    r.sweep.trial_done = lambda number, state, run_id: tagged.append((number, state))  # type: ignore[method-assign]
    r.loop.run()
    assert tagged == written, "a NaN the backend took for a result is a failure the sweep tags itself"


@pytest.mark.usefixtures("sigint_stops")
def test_ctrl_c_while_a_result_is_recorded_stops_the_loop_after_the_record(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    def task(spec: JobSpec, cancelled: threading.Event) -> float:
        if spec.num:
            cancelled.wait(30)
        return _lr(spec)

    r = rig(task, n_trials=4)
    trial_done = r.sweep.trial_done
    recorded = []

    def ctrl_c_midway(number: int, state: str, run_id: str | None = None) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        trial_done(number, state, run_id)
        recorded.append(number)

    monkeypatch.setattr(r.sweep, "trial_done", ctrl_c_midway)
    with pytest.raises(KeyboardInterrupt):
        r.loop.run()
    assert recorded == [0], "the record under way when the signal came was finished"
    assert [t.state for t in r.study.trials][:2] == [TrialState.COMPLETE, TrialState.RUNNING]
    assert not r.loop.launcher.running, "the running trial was cancelled"
