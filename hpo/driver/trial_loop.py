"""The asynchronous ask-and-tell loop: ``workers`` trials always in flight, each result told at once.

Rules:
- New trials are asked while the study holds fewer than ``n_trials``; trials an earlier driver left RUNNING
  are run again first, as the same Optuna trials (a RunPod job is re-attached when it is known).
- The driver must be the study's only writer: a new trial numbered past those it knows of means another
  process added trials (a second sweep of the same study), and stops the sweep with an ``HPOError``.
- While every slot is busy, the next trial is asked and its config composed ahead, so that a slot that
  frees starts it at once (not with a budget, where each trial is asked only once the last costs are in).
- With a pruner (``hydra/sweeper/pruner``), each epoch a running trial reports (its handle's ``progress``)
  is reported to the study, and a trial the pruner gives up on is stopped (``JobHandle.prune``: its worker
  stays, for the next trial); its job's return, whatever it is, makes it PRUNED, with the last epoch's value,
  unless it completed with a value before the stop took effect. Pruned trials are finished, never failed.
- A job that fails, or returns NaN or inf, is a FAIL trial, never a crash of the sweep; but a dataset that
  cannot be loaded stops the sweep at once (with the first trial's error), unless the sweep searches the
  dataset: no other trial could escape it. So does a backend that cannot run jobs (``EndpointError``).
- ``max_failure_rate`` is failed / finished trials over the whole study (earlier runs of it included). It
  is exceeded once that rate passes it with at least ``min(workers, n_trials)`` trials finished (the first
  trials alone do not decide), or as soon as the failures outnumber ``max_failure_rate * n_trials`` (the
  study can no longer end under it). Exceeding it cancels the running trials and raises an ``HPOError``.
- With ``launcher.budget_usd``, no new trial is asked once what was spent plus the mean cost of one trial
  for each running one and for the new one would pass it. What was spent is what the backend billed where it
  can tell (RunPod: every worker's time, cold starts and idle time included), else the finished trials' costs.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus

from hpo.core import interrupts
from hpo.core.collector import freeze_setup
from hpo.core.errors import DatasetError, EndpointError, HPOError
from hpo.core.names import ERROR_TAG
from hpo.driver.live import EventLog, Snapshot, SweepView, TrialView
from hpo.driver.study import COST_ATTR, JOB_ID_ATTR, StudyState, StudyWrittenElsewhere, reopen

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.driver.search_space import SearchSpace
    from hpo.driver.sweep_run import Sweep
    from hpo.records.sweep_runs import TrialRun
    from launchers.dispatch import Job
    from launchers.hydra_job import JobSpec
    from launchers.launcher import HPOLauncher

log = logging.getLogger(__name__)


@dataclass
class ReadyTrial:
    """A trial asked (or taken up again) with its job composed, waiting for a free slot."""

    trial: optuna.Trial
    spec: JobSpec
    run_id: str | None = None
    job_id: str | None = None

    @property
    def resumed(self) -> bool:
        return self.run_id is not None or self.job_id is not None


@dataclass
class Stopped:
    """A collected job: its objective values, or why its trial failed or that it was pruned."""

    job: Job
    values: list[float] | None
    error: str | None
    # the Optuna state the study is told: COMPLETE, PRUNED or FAIL
    state: str
    # the trial failed on its dataset, which every trial of the sweep shares unless it searches it
    dataset_failed: bool = False
    # the backend cannot run any trial of the sweep (a RunPod endpoint with no workers, say)
    backend_failed: bool = False


@dataclass
class LoopRules:
    """How many trials to run and when to stop early."""

    n_trials: int
    max_failure_rate: float
    budget_usd: float | None = None


def outcome(ret: JobReturn, n_objectives: int) -> tuple[list[float] | None, str | None]:
    """A job's objective values, or why the trial failed (it raised, or returned no finite number)."""
    if ret.status != JobStatus.COMPLETED:
        error = ret._return_value
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, text
    raw = ret._return_value
    try:
        values = [float(raw)] if n_objectives == 1 else [float(v) for v in raw]
    except (TypeError, ValueError):
        return None, f"returned {raw!r}, not {n_objectives} number(s)"
    if len(values) != n_objectives:
        return None, f"returned {len(values)} values for {n_objectives} objectives"
    if not all(math.isfinite(v) for v in values):
        return None, f"returned {raw} (not finite)"
    return values, None


class TrialLoop:
    """Keeps the launcher's slots busy with the study's trials and tells each result as it comes."""

    def __init__(
        self,
        study: optuna.Study,
        launcher: HPOLauncher,
        space: SearchSpace,
        rules: LoopRules,
        sweep: Sweep,
        view: SweepView,
        events: EventLog,
        state: StudyState,
    ) -> None:
        from optuna.pruners import NopPruner

        self.study, self.launcher, self.space, self.rules = study, launcher, space, rules
        self.sweep, self.view, self.events = sweep, view, events
        self.started = time.monotonic()
        self.maximize = len(study.directions) == 1 and study.directions[0].name == "MAXIMIZE"
        self.complete, self.failed, self.asked = state.complete, state.failed, state.asked
        self.pruned = state.pruned
        # whether running trials report their epochs to the study, whose pruner may stop them
        self.prunes = len(study.directions) == 1 and not isinstance(study.pruner, NopPruner)
        # the last epoch each running trial reported, and the trials told to stop early
        self.reported: dict[int, int] = {}
        self.pruning: set[int] = set()
        self.stale: deque[FrozenTrial] = deque(state.stale)
        self.best = study.best_value if state.complete and len(study.directions) == 1 else None
        trials = study.get_trials(deepcopy=False)
        self.costs = [float(t.user_attrs[COST_ATTR]) for t in trials if COST_ATTR in t.user_attrs]
        # what trials cost before this driver (a resumed sweep); this driver's backend bills the rest
        self.earlier_cost = sum(self.costs)
        # the number the next new trial gets, unless another process adds trials to the study
        self.next_number = len(trials)
        self.durations: list[float] = []
        self.trials: dict[int, optuna.Trial] = {}
        # trials told to the study, not recorded yet: number, state, run id if the job knows it, and whether
        # the backend tagged that state with the run's outcome already
        self.told: list[tuple[int, str, str | None, bool]] = []
        self.job_ids: set[int] = set()
        self.first_failure: str | None = None
        self.over_budget = False
        self.ready: ReadyTrial | None = None

    def run(self) -> None:
        """Run trials until the study is complete; on any interruption cancel the running ones first.

        A signal takes effect while the loop waits or between two of its steps, so a trial is never left
        half-told to the study or its MLflow run half-written (see ``hpo.core.interrupts``).
        """
        freeze_setup()
        with interrupts.deferred():
            self._loop()

    def _loop(self) -> None:
        try:
            while True:
                interrupts.check()
                stopped = [self._collect(job) for job in self.launcher.finished()]
                if stopped and self.ready is not None:
                    # the trial composed ahead takes a freed slot before the study is told anything
                    self._start(self.ready)
                    self.ready = None
                for stop in stopped:
                    self._tell(stop)
                self._fill()
                self._judge()
                idle = not self.told
                self._record()
                if not self.trials:
                    return
                self._note_job_ids()
                self.view.update(self.snapshot())
                if idle:
                    self.launcher.wait()
        except BaseException:
            self.launcher.cancel_all()
            self._record()
            raise

    def _fill(self) -> None:
        while self.launcher.free_slots:
            ready, self.ready = self.ready, None
            ready = ready or self._next()
            if ready is None:
                return
            self._start(ready)
        if self.ready is None and self.rules.budget_usd is None and not self.stale:
            self.ready = self._next()

    def _start(self, ready: ReadyTrial) -> None:
        self.launcher.start(ready.spec, self.best, run_id=ready.run_id, job_id=ready.job_id)
        self.trials[ready.trial.number] = ready.trial
        self.events.write("submit", ready.trial.number, resumed=ready.resumed)

    def _next(self) -> ReadyTrial | None:
        """The next trial to run, with its job composed: a stale one first, else a new one if one may be
        asked."""
        run_id = job_id = None
        while self.stale:
            frozen = self.stale.popleft()
            runs = self.sweep.parent.trial_runs(frozen.number)
            if self._adopt(frozen, runs):
                continue
            trial = reopen(self.study, frozen.number)
            run_id = runs[-1].run_id if runs else None
            job_id = frozen.user_attrs.get(JOB_ID_ATTR)
            break
        else:
            if not self._may_ask():
                return None
            trial = self.study.ask()
            self.asked += 1
            self._check_number(trial.number)
        spec = self.launcher.prepare(self.space.overrides(trial), trial.number)
        return ReadyTrial(trial, spec, run_id, job_id)

    def _adopt(self, frozen: FrozenTrial, runs: list[TrialRun]) -> bool:
        """Tell a stale trial whose job finished, or was pruned, after its driver stopped; False when it must
        run again."""
        from optuna.trial import TrialState

        if len(self.study.directions) != 1:
            return False
        if any(r.pruned for r in runs):
            log.info(f"#{frozen.number} was pruned as its driver stopped")
            self.study.tell(frozen.number, state=TrialState.PRUNED)
            self.sweep.trial_done(frozen.number, "PRUNED")
            self.pruned += 1
            return True
        done = [r for r in runs if r.status == "FINISHED"]
        value = done[-1].objective if done else None
        if value is None or not math.isfinite(value):
            return False
        log.info(f"#{frozen.number} finished after its driver stopped: {value}")
        self.study.tell(frozen.number, [value])
        self.sweep.trial_done(frozen.number, "COMPLETE")
        self.complete += 1
        self._improve(value)
        return True

    def _check_number(self, number: int) -> None:
        """Stop when a new trial's number shows that another process added trials since this driver's last
        (a trial enqueued by hand and asked now has a lower number)."""
        if number > self.next_number:
            raise StudyWrittenElsewhere(
                f"study '{self.study.study_name}' gained trials from another process while this sweep ran it "
                f"(this sweep's trial #{number} came after #{self.next_number - 1}): run one sweep of a "
                "study at a time"
            )
        self.next_number = max(self.next_number, number + 1)

    def _may_ask(self) -> bool:
        if self.asked >= self.rules.n_trials or self.over_budget:
            return False
        budget = self.rules.budget_usd
        if budget is None or not self.costs:
            return True
        # what the backend billed (cold starts and idle workers too) where it can tell, else the trials' costs
        billed = self.launcher.open().backend.spent_usd()
        spent = sum(self.costs) if billed is None else self.earlier_cost + billed
        mean = spent / len(self.costs)
        if spent + mean * (len(self.trials) + 1) <= budget:
            return True
        self.over_budget = True
        log.warning(
            f"launcher.budget_usd={budget:g}: ${spent:.2f} spent and ~${mean:.2f} a trial, so no new trial "
            f"starts ({len(self.trials)} still running, {self.rules.n_trials - self.asked} not asked)"
        )
        return False

    def _collect(self, job: Job) -> Stopped:
        """A stopped job's outcome, its slot freed and its end recorded."""
        ret = self.launcher.collect(job)
        values, error = outcome(ret, len(self.study.directions))
        if self.prunes and job.num not in self.pruning:
            self._report(job)
        self.reported.pop(job.num, None)
        pruned = values is None and job.num in self.pruning
        self.pruning.discard(job.num)
        if error is not None and ret.status == JobStatus.COMPLETED and not pruned:
            log.warning(f"#{job.num} {error}: counted as a failed trial")
        self.durations.append(job.elapsed_s)
        state = "COMPLETE" if error is None else "PRUNED" if pruned else "FAIL"
        self.events.write("finish", job.num, state=state, value=values[0] if values else None)
        failed = ret.status != JobStatus.COMPLETED and not pruned
        dataset_failed = failed and isinstance(ret._return_value, DatasetError)
        backend_failed = failed and isinstance(ret._return_value, EndpointError)
        return Stopped(job, values, error, state, dataset_failed, backend_failed)

    def _judge(self) -> None:
        """Report each running trial's epochs not reported yet to the study, and stop those its pruner gives
        up on before their last epoch (after it, a stop saves nothing and the trial's result is whole)."""
        if not self.prunes:
            return
        for job in self.launcher.running:
            if job.num in self.pruning or (reported := self._report(job)) is None:
                continue
            epoch, value, last = reported
            if not last and self.trials[job.num].should_prune():
                job.handle.prune()
                self.pruning.add(job.num)
                self.events.write("prune", job.num, epoch=epoch, value=value)
                log.info(f"#{job.num} pruned at epoch {epoch}: {self.sweep.objective}={value:.4f}")

    def _report(self, job: Job) -> tuple[int, float, bool] | None:
        """Report a job's latest epoch to its trial unless reported already: the epoch, its objective and
        whether it was the last, or None."""
        trial, progress = self.trials.get(job.num), job.handle.progress or {}
        epoch, value, epochs = progress.get("epoch"), progress.get("objective"), progress.get("epochs")
        if trial is None or epoch is None or value is None or int(epoch) <= self.reported.get(job.num, 0):
            return None
        self.reported[job.num] = int(epoch)
        trial.report(float(value), step=int(epoch))
        return int(epoch), float(value), epochs is not None and int(epoch) >= int(epochs)

    def _tell(self, stop: Stopped) -> None:
        """Tell the study a stopped job's result (slower bookkeeping waits for ``_record``)."""
        from optuna.trial import TrialState

        job, values, error, state = stop.job, stop.values, stop.error, stop.state
        trial = self.trials.pop(job.num)
        cost = job.handle.cost_usd
        if cost is not None:
            trial.set_user_attr(COST_ATTR, float(cost))
            self.costs.append(float(cost))
        if values is not None:
            self._tell_study(trial, values, TrialState.COMPLETE)
            self.complete += 1
            if len(values) == 1:
                self._improve(values[0])
        elif state == "PRUNED":
            self._tell_study(trial, None, TrialState.PRUNED)
            self.pruned += 1
        else:
            trial.set_user_attr(ERROR_TAG, str(error)[:1000])
            self._tell_study(trial, None, TrialState.FAIL)
            self.failed += 1
            self.first_failure = self.first_failure or f"trial #{job.num}: {error}"
        self.told.append((job.num, state, job.handle.run_id, job.handle.optuna_state == state))
        if stop.dataset_failed and not self.space.searches("dataset"):
            raise HPOError(
                f"the sweep stopped: trial #{job.num} could not load the dataset every trial of it shares "
                f"({error})"
            )
        if stop.backend_failed:
            raise HPOError(f"the sweep stopped: {error}")
        self._check_failure_rate()

    def _record(self) -> None:
        """Tag the told trials' runs, call the per-trial hook and show the progress."""
        while self.told:
            number, state, run_id, tagged = self.told.pop(0)
            if not tagged:
                self.sweep.trial_done(number, state, run_id)
            self.sweep.trial_finished(self.study)
            self.view.trial_finished(self.snapshot())

    def _tell_study(self, trial: optuna.Trial, values: list[float] | None, state: Any) -> None:
        try:
            self.study.tell(trial, values, state=state)
        except RuntimeError as exc:
            # Optuna's GridSampler stops the study once the grid is done, which outside optimize() raises
            if "Study.stop" not in str(exc):
                raise

    def _improve(self, value: float) -> None:
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value

    def _check_failure_rate(self) -> None:
        finished = self.complete + self.pruned + self.failed
        rate = self.rules.max_failure_rate
        if not self.failed:
            return
        observed = (
            finished >= min(self.launcher.workers, self.rules.n_trials) and self.failed / finished > rate
        )
        if observed or self.failed > rate * self.rules.n_trials:
            raise HPOError(
                f"{self.failed} of {finished} finished trials failed, over hydra.sweeper.max_failure_rate="
                f"{rate:g}: the sweep stopped and its running trials were cancelled; {self.first_failure} "
                f"(logs under {self.sweep.sweep_dir})"
            )

    def _note_job_ids(self) -> None:
        """Record each remote job's id in its trial as soon as it has one, so a new driver can re-attach."""
        for job in self.launcher.running:
            job_id = job.handle.job_id
            if job_id is not None and job.num not in self.job_ids and job.num in self.trials:
                self.trials[job.num].set_user_attr(JOB_ID_ATTR, str(job_id))
                self.job_ids.add(job.num)

    def snapshot(self) -> Snapshot:
        pruning = self.pruning
        running = [
            TrialView(job.num, job.elapsed_s, job.handle.progress, job.handle.retries, job.num in pruning)
            for job in self.launcher.running
        ]
        queued = 0 if self.over_budget else max(self.rules.n_trials - self.asked, 0) + len(self.stale)
        queued += self.ready is not None
        eta = None
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            left = queued * mean + sum(max(mean - t.elapsed_s, 0.0) for t in running)
            eta = left / self.launcher.workers
        return Snapshot(
            n_trials=self.rules.n_trials,
            queued=queued,
            completed=self.complete,
            pruned=self.pruned,
            failed=self.failed,
            best=self.best,
            elapsed_s=time.monotonic() - self.started,
            eta_s=eta,
            running=running,
        )
