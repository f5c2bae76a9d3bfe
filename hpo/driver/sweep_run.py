"""A sweep's record: the MLflow parent run opened before the first trial and closed with the outcome."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from hpo.core.code_version import version_tags
from hpo.core.names import ERROR_TAG, OPTUNA_STATE_TAG, PARENT_RUN_ENV
from hpo.core.payload import payload_config
from hpo.core.store import resolve_tracking_uri
from hpo.records.sweep_runs import ParentRun
from hpo.reports.results import RESULTS_FILE, SweepResults

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# seconds between two live refreshes of the sweep's reports, at least; and at least this many times the
# CPU time the last refresh took, so that keeping the MLflow view current takes at most 1/20 of the driver
LIVE_INTERVAL_S = 15.0
LIVE_COST_FACTOR = 20.0


class Sweep:
    """A running sweep: its directory, its MLflow parent run, and how to close both.

    ``study`` (``study_name`` and ``storage``) names the Optuna study the sweep runs; with
    ``resume_run_id`` the parent run of an earlier sweep of that study is reopened instead of a new one.
    """

    def __init__(
        self,
        config: DictConfig,
        study: dict[str, str] | None = None,
        resume_run_id: str | None = None,
        searched: Sequence[str] = (),
        final_plots: bool = False,
    ) -> None:
        hydra_cfg = config.hydra
        self.study = study
        # the search space's parameter names: what the results show of each trial
        self.searched = list(searched)
        self.sweep_dir = Path(str(hydra_cfg.sweep.dir))
        self.objective = str(config.mode.objective)
        self.direction = str(config.mode.direction)
        self.tracking_uri = resolve_tracking_uri(str(config.mlflow.tracking_uri), hydra_cfg.runtime.cwd)
        self.experiment_name = str(config.mlflow.experiment_name)
        tags = {"hpo.kind": "sweep", "hpo.sweep_dir": str(self.sweep_dir.resolve()), **version_tags()}
        if study:
            tags.update({"hpo.study_name": study["study_name"], "hpo.study_storage": study["storage"]})
        self.parent = ParentRun(
            self.tracking_uri,
            self.experiment_name,
            run_name=f"sweep {self.sweep_dir.name}",
            tags=tags,
            resume_run_id=resume_run_id,
        )
        sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
        assert isinstance(sweeper, dict)
        self.parent.log_config(
            {
                **payload_config(config),
                "sweep": {k: v for k, v in sweeper.items() if k not in ("_target_", "params")},
                "search_space": sweeper.get("params") or {},
            }
        )
        os.environ[PARENT_RUN_ENV] = self.parent.run_id
        self.register_best = bool(config.mlflow.register_best)
        self._reports = ReportRefresher(self, final_plots=final_plots)

    @property
    def results_path(self) -> Path:
        return self.sweep_dir / RESULTS_FILE

    def trial_done(self, number: int, state: str, run_id: str | None = None) -> None:
        """Record on trial ``number``'s run (``run_id`` when the driver knows it, else every run found for
        the trial) the state the study was told."""
        if run_id is None:
            self.parent.tag_trial(number, {OPTUNA_STATE_TAG: state})
        else:
            self.parent.client.set_tag(run_id, OPTUNA_STATE_TAG, state)

    def sync_states(self, study: optuna.Study) -> None:
        """Tag the runs of trials told to ``study`` whose tag an earlier driver, killed, did not set."""
        states = {t.number: t.state.name for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for run in self.parent.trials():
            state = states.get(run.trial_number)
            if state is not None and run.optuna_state != state:
                self.parent.client.set_tag(run.run_id, OPTUNA_STATE_TAG, state)

    def trial_finished(self, study: optuna.Study) -> None:
        """Called each time a trial's result has been told to ``study``: refresh the sweep's reports."""
        self._reports.refresh(study)

    def close(self, status: str, cost: dict[str, float] | None = None) -> SweepResults:
        """Write the results file, log it to the parent run with the backend's ``cost`` report (its parts) and
        end that run with ``status``."""
        trials = self.parent.end_orphans("KILLED" if status == "KILLED" else "FAILED")
        results = SweepResults(self.objective, self.direction, trials, self.searched)
        final = status != "KILLED"
        if final:
            # the final reports are drawn in the reports' thread while this one registers the best model
            self._reports.start_final()
        if self.register_best and results.best is not None and status == "FINISHED":
            self._register(results.best.run_id)
        self._reports.finish(final=final)
        if not final:
            log.info(f"reports of the interrupted sweep: python -m hpo.reports {self.sweep_dir}")
        mlflow_info = {
            "tracking_uri": self.tracking_uri,
            "experiment_name": self.experiment_name,
            "parent_run_id": self.parent.run_id,
        }
        path = results.write(self.sweep_dir, mlflow_info, self.study)
        metrics: dict[str, float] = {
            "trials_completed": len(results.completed),
            "trials_pruned": len(results.pruned),
            "trials_failed": len(results.failed),
        }
        best = results.best
        if best is not None and best.objective is not None:
            metrics[f"best_{self.objective}"] = best.objective
        metrics.update(cost or {})
        settled = len(results.completed) + len(results.pruned) + len(results.failed)
        self.parent.finish(status, metrics, [path], step=settled)
        os.environ.pop(PARENT_RUN_ENV, None)
        return results

    def _register(self, run_id: str) -> None:
        from hpo.core.errors import HPOError
        from hpo.records.registry import register_best

        try:
            model = register_best(self.tracking_uri, run_id)
        except HPOError as exc:
            log.warning(f"best model not registered: {exc}")
            return
        print(f"model:   {model.uri} (the best trial's model in the MLflow Model Registry)")

    def failure_summary(self, results: SweepResults, study: optuna.Study | None = None) -> str | None:
        """Why the sweep produced nothing, when no trial completed: from the trials' runs, else from the
        errors ``study`` holds (trials whose config was refused where they ran, before they had a run)."""
        from optuna.trial import TrialState

        if results.trials:
            if results.completed:
                return None
            failed = [(t.trial_number, t.error) for t in results.failed]
            pruned = len(results.pruned)
        else:
            told_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            told = study.get_trials(deepcopy=False, states=told_states) if study else []
            if any(t.state == TrialState.COMPLETE for t in told):
                return None
            failed = [
                (t.number, t.user_attrs.get(ERROR_TAG, "no error recorded"))
                for t in told
                if t.state == TrialState.FAIL
            ]
            pruned = sum(t.state == TrialState.PRUNED for t in told)
        if failed:
            number, error = failed[0]
            counts = (
                f"no trial completed: {len(failed)} failed, {pruned} pruned"
                if pruned
                else f"all {len(failed)} trials failed"
            )
            return f"{counts}; trial #{number}: {error} (logs under {self.sweep_dir})"
        if pruned:
            return (
                f"no trial completed: the pruner stopped all {pruned} early; loosen hydra.sweeper.pruner so "
                "that some run to the end, or set hydra/sweeper/pruner=none"
            )
        return None


class ReportRefresher:
    """Keeps the parent run's ``trials.csv`` and progress metrics current in a background thread, at most
    every LIVE_INTERVAL_S (longer when a refresh costs more than LIVE_COST_FACTOR allows), so reporting never
    holds up the next trial. With ``final_plots`` the plots are drawn at the end, in the same thread, by
    libraries another thread loads at a low priority while the sweep runs (a process of their own would
    import MLflow and Optuna a second time, taking that CPU time from the trials)."""

    def __init__(self, sweep: Sweep, *, final_plots: bool) -> None:
        from hpo.reports.sweep_report import REPORTS_DIR, LiveReport

        self._live = LiveReport(
            sweep.parent.client,
            sweep.parent.run_id,
            sweep.sweep_dir / REPORTS_DIR,
            objective=sweep.objective,
            direction=sweep.direction,
            plot_interval_s=math.inf,
        )
        self._sweep_dir = sweep.sweep_dir
        self._last = -math.inf
        self._interval_s = LIVE_INTERVAL_S
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-reports")
        self._pending: Future[None] | None = None
        self._study: optuna.Study | None = None
        self._final: Future[None] | None = None
        self._loaded: Future[None] | None = None
        if final_plots:
            self._loaded = Future()
            threading.Thread(target=self._load, name="hpo-report-libraries", daemon=True).start()

    def _load(self) -> None:
        """Load and warm up the plotting libraries, at a lower priority than the trials' processes."""
        from hpo.reports.plots import load_libraries, warm_up

        assert self._loaded is not None
        with contextlib.suppress(OSError, AttributeError):  # per-thread priorities are Linux's
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            load_libraries()
            warm_up()
        except BaseException as exc:
            self._loaded.set_exception(exc)
        else:
            self._loaded.set_result(None)

    def refresh(self, study: optuna.Study) -> None:
        self._study = study
        idle = self._pending is None or self._pending.done()
        if idle and time.monotonic() - self._last >= self._interval_s:
            self._last = time.monotonic()
            self._pending = self._pool.submit(self._run, study)

    def start_final(self) -> None:
        """Start drawing the final reports, once a live refresh under way has published."""
        if self._loaded is not None:
            self._final = self._pool.submit(self._draw_final)

    def finish(self, *, final: bool) -> None:
        """Wait for the final reports (``final``, after ``start_final``); a failure is a warning naming the
        command that draws them again."""
        if final and self._final is not None:
            try:
                self._final.result()
            except Exception as exc:
                log.warning(
                    f"final sweep reports not drawn ({type(exc).__name__}: {exc}); "
                    f"run: python -m hpo.reports {self._sweep_dir}"
                )
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _draw_final(self) -> None:
        assert self._loaded is not None
        self._loaded.result()
        self._live.refresh(self._study, final=True)

    def _run(self, study: optuna.Study) -> None:
        started = time.thread_time()
        try:
            self._live.refresh(study)
        except Exception as exc:
            log.warning(f"sweep reports not refreshed: {type(exc).__name__}: {exc}")
        self._interval_s = max(LIVE_INTERVAL_S, LIVE_COST_FACTOR * (time.thread_time() - started))
