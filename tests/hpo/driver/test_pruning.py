"""Pruning, the driver's side: the trial loop reports each epoch a running trial reports to the study, stops
the trials its pruner gives up on, and tells and records them PRUNED; on hpo's real config, launcher, Optuna
study and MLflow store, with jobs that train in threads so that each test takes seconds."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hpo.core.errors import ConfigError
from hpo.core.failures import explained, one_line
from hpo.core.names import OPTUNA_STATE_TAG, PRUNED_TAG, TRIAL_NUMBER_TAG
from hpo.driver.live import EVENTS_FILE, EventLog, Snapshot, SweepView, summary
from hpo.driver.search_space import SearchSpace
from hpo.driver.study import StudyState, open_study
from hpo.driver.sweep_run import Sweep
from hpo.driver.trial_loop import LoopRules, TrialLoop
from hpo.reports.cli import Source, print_summary
from hpo.reports.plots import rebuild_study
from hpo.reports.sweep_report import CSV_FILE, SweepReport
from launchers.backend import Backend
from launchers.hydra_job import JobSpec
from tests.hpo.driver.sweep_config import Rig, hpo_sweeper
from tests.launchers.thread_backend import ThreadHandle

EPOCHS = 3


class Verdicts(optuna.pruners.BasePruner):
    """Optuna's median pruner, from the first epoch once one trial completed (or ``pruner``), recording
    each verdict so that a job can wait for the driver's verdict on the epoch it reported."""

    def __init__(self, pruner: optuna.pruners.BasePruner | None = None) -> None:
        self.median = pruner or optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
        self.verdicts: dict[tuple[int, int | None], bool] = {}
        self._given = threading.Condition()

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        verdict = self.median.prune(study, trial)
        with self._given:
            self.verdicts[trial.number, trial.last_step] = verdict
            self._given.notify_all()
        return verdict

    def wait(self, number: int, epoch: int) -> bool:
        """Whether the driver pruned trial ``number`` at ``epoch``, once it judged it."""
        with self._given:
            assert self._given.wait_for(lambda: (number, epoch) in self.verdicts, timeout=30), "never judged"
            return self.verdicts[number, epoch]


class EpochHandle(ThreadHandle):
    """A job training in a thread, which publishes each epoch's objective as ``progress`` as every backend's
    handle does."""

    def __init__(self, spec: JobSpec, future: Future[Any], cancelled: threading.Event) -> None:
        super().__init__(spec, future, cancelled, None)
        self.pruned = threading.Event()

    def prune(self) -> None:
        self.pruned.set()


Train = Callable[[JobSpec, EpochHandle], float]


class EpochBackend(Backend):
    """Runs ``train(spec, handle)`` for every job in a thread of the test process: a real ``Backend``."""

    def __init__(self, train: Train, tracking_uri: str, parent_run_id: str, experiment_id: str) -> None:
        self.train = train
        self.client = MlflowClient(tracking_uri)
        self.parent_run_id, self.experiment_id = parent_run_id, experiment_id
        self.submitted: list[int] = []
        self.handles: dict[int, EpochHandle] = {}
        self._pool = ThreadPoolExecutor(max_workers=4)

    def submit(self, spec: JobSpec, slot: int) -> EpochHandle:
        self.submitted.append(spec.num)
        started = threading.Event()
        future = self._pool.submit(self._job, spec, started)
        handle = self.handles[spec.num] = EpochHandle(spec, future, threading.Event())
        started.set()
        return handle

    def _job(self, spec: JobSpec, started: threading.Event) -> float:
        """The trial's MLflow run (tagged pruned, as the worker tags it, when it stopped early) around its
        training."""
        started.wait()
        handle = self.handles[spec.num]
        tags = {"mlflow.parentRunId": self.parent_run_id, TRIAL_NUMBER_TAG: str(spec.num)}
        run_id = handle.run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        try:
            value = self.train(spec, handle)
        except TrialPruned:
            self.client.set_tag(run_id, PRUNED_TAG, "true")
            self.client.set_terminated(run_id, "FINISHED")
            raise
        self.client.log_metric(run_id, "objective", value)
        self.client.set_terminated(run_id, "FINISHED")
        return value


class TrialPruned(Exception):
    """A job's training stopped because the driver pruned its trial."""


def curves(
    values: dict[int, float | Sequence[float]],
    judge: Verdicts | None = None,
    *,
    finish_first: Sequence[int] = (),
) -> Train:
    """Training that reports trial n's value ``values[n]`` at every epoch (or its epochs' values), waits for
    ``judge``'s verdict on each but the last (none without a pruner), and stops at the epoch it is pruned,
    unless n is in ``finish_first``: its last epoch then ends before the prune takes effect."""

    def train(spec: JobSpec, handle: EpochHandle) -> float:
        given = values[spec.num]
        per_epoch = [float(given)] * EPOCHS if isinstance(given, (int, float)) else list(given)
        doomed = False
        for epoch, value in enumerate(per_epoch, start=1):
            handle.progress = {"epoch": epoch, "epochs": EPOCHS, "objective": value}
            doomed = doomed or (judge is not None and epoch < EPOCHS and judge.wait(spec.num, epoch))
            if doomed and spec.num not in finish_first:
                assert handle.pruned.wait(30), "pruned in the study, but the job was not told"
                raise TrialPruned(f"pruned after epoch {epoch}")
        return per_epoch[-1]

    return train


@pytest.fixture
def rig(tmp_path: Path, tracking_uri: str, hydra_restore_singletons: Any) -> Callable[..., Rig]:
    """A loop over ``study`` on hpo's sweeper and launcher, one worker, its jobs trained by ``train``."""

    def build(train: Train, study: optuna.Study, n_trials: int, max_failure_rate: float = 1.0) -> Rig:
        cfg, sweeper, launcher = hpo_sweeper(
            tmp_path,
            f"mlflow.tracking_uri={tracking_uri}",
            f"mlflow.experiment_name=pruning-{tmp_path.name}",
            "launcher.workers=1",
            "hydra.launcher.poll_interval_s=0.02",
        )
        sweep = Sweep(cfg, study={"study_name": study.study_name, "storage": "memory"})
        backend = EpochBackend(train, sweep.tracking_uri, sweep.parent.run_id, sweep.parent.experiment_id)
        launcher.open(backend=backend)
        rules = LoopRules(n_trials, max_failure_rate)
        space = SearchSpace.parse(sweeper.sweeper, [])
        view, events = SweepView(sweep.objective, live=False), EventLog(sweep.sweep_dir)
        loop = TrialLoop(study, launcher, space, rules, sweep, view, events, StudyState.of(study))
        return Rig(study, backend, sweep, loop)

    return build


def _study(tmp_path: Path, pruner: optuna.pruners.BasePruner | None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.RandomSampler(seed=0)
    return open_study("s", str(tmp_path / "optuna.journal"), sampler, ["maximize"], pruner)


def test_a_trial_the_pruner_gives_up_on_stops_and_is_pruned_in_optuna_and_mlflow(
    rig: Callable[..., Rig], tmp_path: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    judge = Verdicts()
    r = rig(
        curves({0: 0.9, 1: 0.1, 2: 0.95}, judge), _study(tmp_path, judge), n_trials=3, max_failure_rate=0.0
    )
    r.loop.run()

    states = [t.state for t in r.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE], "never a failure"
    pruned = r.study.trials[1]
    assert pruned.intermediate_values == {1: 0.1}, "stopped at the first epoch it fell behind"
    assert pruned.value == 0.1, "Optuna keeps the last epoch's value"
    assert r.study.trials[2].intermediate_values == {1: 0.95, 2: 0.95, 3: 0.95}
    assert r.backend.submitted == [0, 1, 2], "the slot took the next trial"
    events = [yaml.safe_load(line) for line in (r.sweep.sweep_dir / EVENTS_FILE).read_text().splitlines()]
    assert [(e["event"], e.get("epoch")) for e in events if e.get("trial") == 1] == [
        ("submit", None),
        ("prune", 1),
        ("finish", None),
    ]

    client = MlflowClient(tracking_uri)
    run = client.get_run(str(r.backend.handles[1].run_id))
    assert run.data.tags[OPTUNA_STATE_TAG] == "PRUNED" and run.data.tags[PRUNED_TAG] == "true"
    results = r.sweep.close("FINISHED")
    assert results.describe().startswith("2 of 3 trials completed, 1 pruned, 0 failed; best trial #2")
    written = yaml.safe_load(r.sweep.results_path.read_text())
    assert (written["n_completed"], written["n_pruned"], written["n_failed"]) == (2, 1, 0)
    metrics = client.get_run(r.sweep.parent.run_id).data.metrics
    assert (metrics["trials_completed"], metrics["trials_pruned"], metrics["trials_failed"]) == (2, 1, 0)
    report = SweepReport.collect(None, client, r.sweep.parent.run_id)
    report.write(tmp_path / "reports", plots=False)
    with (tmp_path / "reports" / CSV_FILE).open() as f:
        rows = {row["number"]: row for row in csv.DictReader(f)}
    assert [rows[n]["state"] for n in "012"] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert [t.state for t in rebuild_study(report).trials] == states, "plots without the study see it pruned"
    print_summary(report, Source("sweep", None), published=False, top=3)
    assert capsys.readouterr().out.splitlines()[0] == "sweep: 3 trials, 2 completed, 1 pruned, 0 failed"


def test_a_trial_that_completed_before_its_prune_took_effect_is_complete(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    judge = Verdicts()
    r = rig(curves({0: 0.9, 1: 0.1}, judge, finish_first=[1]), _study(tmp_path, judge), n_trials=2)
    r.loop.run()
    assert r.backend.handles[1].pruned.is_set(), "the pruner gave up on it"
    assert [t.state for t in r.study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert r.study.trials[1].value == 0.1


def test_a_trial_behind_only_at_its_last_epoch_completes(rig: Callable[..., Rig], tmp_path: Path) -> None:
    judge = Verdicts()
    r = rig(curves({0: 0.9, 1: (0.95, 0.95, 0.1)}, judge), _study(tmp_path, judge), n_trials=2)
    r.loop.run()
    assert [t.state for t in r.study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert r.study.trials[1].intermediate_values == {1: 0.95, 2: 0.95, 3: 0.1}, "every epoch reported"
    assert (1, EPOCHS) not in judge.verdicts, "a stop after the last epoch saves nothing: never judged"
    assert not r.backend.handles[1].pruned.is_set() and r.study.trials[1].value == 0.1


def test_a_sweep_whose_every_trial_was_pruned_says_so_in_one_line(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    judge = Verdicts(optuna.pruners.ThresholdPruner(lower=0.5))
    r = rig(curves({0: 0.1, 1: 0.2}, judge), _study(tmp_path, judge), n_trials=2, max_failure_rate=0.0)
    r.loop.run()
    assert [t.state for t in r.study.trials] == [TrialState.PRUNED] * 2, "pruned trials are no failures"
    results = r.sweep.close("FAILED")
    assert results.describe() == "0 of 2 trials completed, 2 pruned, 0 failed"
    summary = r.sweep.failure_summary(results, r.study)
    assert summary is not None and summary.startswith("no trial completed: the pruner stopped all 2 early")


def test_without_a_pruner_no_trial_reports_or_stops(rig: Callable[..., Rig], tmp_path: Path) -> None:
    r = rig(curves({0: 0.9, 1: 0.1}), _study(tmp_path, None), n_trials=2)
    r.loop.run()
    assert [t.state for t in r.study.trials] == [TrialState.COMPLETE] * 2
    assert not any(t.intermediate_values for t in r.study.trials)


def test_a_resumed_sweep_keeps_its_pruned_trials(rig: Callable[..., Rig], tmp_path: Path) -> None:
    judge = Verdicts()
    rig(curves({0: 0.9, 1: 0.1}, judge), _study(tmp_path, judge), n_trials=2).loop.run()
    # and a trial an earlier driver left RUNNING, though its worker had ended its run pruned
    left = _study(tmp_path, None).ask()
    left.report(0.2, step=1)
    state = StudyState.of(_study(tmp_path, None))
    assert (state.complete, state.pruned, state.failed, len(state.stale)) == (1, 1, 0, 1)

    again = rig(curves({3: 0.95}, judge), _study(tmp_path, judge), n_trials=4)
    client, parent = again.backend.client, again.sweep.parent
    tags = {"mlflow.parentRunId": parent.run_id, TRIAL_NUMBER_TAG: str(left.number), PRUNED_TAG: "true"}
    run_id = client.create_run(parent.experiment_id, tags=tags).info.run_id
    client.set_terminated(run_id, "FINISHED")
    again.loop.run()

    trials = _study(tmp_path, None).trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.PRUNED,
        TrialState.COMPLETE,
    ]
    assert trials[2].value == 0.2
    assert again.backend.submitted == [3], "neither pruned trial runs again"
    assert client.get_run(run_id).data.tags[OPTUNA_STATE_TAG] == "PRUNED"


def test_the_live_view_counts_pruned_trials() -> None:
    snap = Snapshot(n_trials=8, queued=1, completed=4, failed=1, best=0.9, elapsed_s=30, eta_s=10, pruned=2)
    assert summary(snap, "val_accuracy").startswith(
        "7 of 8 trials done (4 completed, 2 pruned, 1 failed), 0 running, 1 queued"
    )


@pytest.mark.parametrize(
    ("option", "pruner", "args"),
    [
        ("median", optuna.pruners.MedianPruner, {"_n_startup_trials": 3, "_n_warmup_steps": 2}),
        ("percentile", optuna.pruners.PercentilePruner, {"_percentile": 75.0, "_n_startup_trials": 3}),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner, {"_min_resource": 1}),
        ("hyperband", optuna.pruners.HyperbandPruner, {"_min_resource": 1, "_max_resource": 4}),
        ("none", type(None), {}),
    ],
)
def test_each_pruner_option_gives_the_study_its_optuna_pruner(
    tmp_path: Path, hydra_restore_singletons: Any, option: str, pruner: type, args: dict[str, Any]
) -> None:
    _, sweeper, _ = hpo_sweeper(tmp_path, f"hydra/sweeper/pruner={option}", "trainer.max_epochs=4")
    assert isinstance(sweeper.pruner, pruner)
    assert {k: getattr(sweeper.pruner, k) for k in args} == args
    study = _study(tmp_path, sweeper.pruner)
    assert isinstance(study.pruner, optuna.pruners.NopPruner if sweeper.pruner is None else pruner)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=-1"],
            "hydra.sweeper.pruner: Number of startup trials cannot be negative, but got n_startup_trials=-1.",
        ),
        (
            ["hydra/sweeper/pruner=hyperband", "hydra.sweeper.pruner.reduction_factor=1"],
            "hydra.sweeper.pruner: The value of `reduction_factor` is 1, but must be `reduction_factor >= 2`",
        ),
        (
            ["hydra/sweeper/pruner=hyperband", "trainer.max_epochs=1", "hydra.sweeper.pruner.min_resource=2"],
            "hydra.sweeper.pruner: max_resource=1 is below min_resource=2",
        ),
        (
            ["hydra/sweeper/pruner=median", "mode=health"],
            "mode=health scores a trial only once it ends, so no pruner can judge its epochs: prune in "
            "mode=simple, or set hydra/sweeper/pruner=none",
        ),
        (
            ["hydra/sweeper/pruner=median", "hydra.sweeper.direction=[maximize,minimize]"],
            "a study of 2 objectives cannot prune its trials (Optuna prunes on one objective): set "
            "hydra/sweeper/pruner=none",
        ),
    ],
    ids=["negative-startup", "hyperband-factor", "hyperband-resources", "health-mode", "two-objectives"],
)
def test_a_pruner_the_sweep_cannot_use_is_a_config_error_before_any_trial(
    tmp_path: Path, hydra_restore_singletons: Any, args: list[str], expected: str
) -> None:
    store = f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(Exception) as refused:
        _, sweeper, _ = hpo_sweeper(tmp_path, store, *args)
        sweeper.sweep(arguments=[])
    assert isinstance(explained(refused.value), ConfigError), "the CLI's one line and exit code 2"
    assert one_line(refused.value) == expected
    assert not (tmp_path / "sweep").exists(), "refused before the backend started"
