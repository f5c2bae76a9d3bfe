"""Sweep reports: ``trials.csv``, the architecture gallery, Optuna's plots and the parent run's progress
metrics, cheap to refresh."""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.core.errors import HPOError
from hpo.core.names import ERROR_TAG, OPTUNA_STATE_TAG, PRUNED_TAG, TRIAL_NUMBER_TAG
from hpo.reports import gallery
from hpo.reports.results import override_values, trial_state

if TYPE_CHECKING:
    import optuna
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

REPORTS_DIR = "reports"
CSV_FILE = "trials.csv"
SETTLED = ("COMPLETE", "FAIL", "PRUNED")
# a run's start time is taken before its creation commits, which can wait out MLflow's SQLite busy timeout
# (20 s) while others write: reads go back this far before the earliest run that can still change
START_MARGIN_MS = 30_000


class ReportError(HPOError):
    """A sweep's report cannot be built: its study or its runs cannot be read, or the study has no single
    objective."""


@dataclass
class TrialRow:
    """One trial as the reports show it: Optuna's view of it merged with its MLflow run."""

    number: int
    # Optuna's state name: COMPLETE, FAIL, PRUNED, RUNNING or WAITING
    state: str
    objective: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    fit_s: float | None = None
    cost_usd: float | None = None
    run_id: str | None = None
    error: str | None = None


@dataclass
class SweepReport:
    """A snapshot of a sweep's trials that writes the report files and publishes them to the parent run."""

    objective: str
    direction: str
    trials: list[TrialRow]
    study: optuna.Study | None = None
    # each trial's compact architecture (``hpo.reports.gallery``), by trial number
    architectures: dict[int, dict[str, Any]] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def collect(
        cls,
        study: optuna.Study | None = None,
        client: MlflowClient | None = None,
        parent_run_id: str | None = None,
        *,
        objective: str | None = None,
        direction: str | None = None,
        children: ChildRuns | None = None,
        architectures: gallery.ArchitectureReader | None = None,
    ) -> SweepReport:
        """Merge the study's trials (when there is a study) with the parent run's child runs, by trial number.

        Without ``objective`` or ``direction`` they come from the study, then from the parent run's
        ``mode.*`` params. ``children`` reads the child runs and ``architectures`` their architectures (a
        reader kept between refreshes reads only those that can have changed).
        """
        if study is not None and len(study.directions) > 1:
            raise ReportError(f"study '{study.study_name}' has several objectives; hpo reports need one")
        records = {t.number: t for t in _from_study(study)} if study is not None else {}
        if client is not None and parent_run_id is not None:
            parent = client.get_run(parent_run_id)
            objective = objective or parent.data.params.get("mode.objective")
            direction = direction or parent.data.params.get("mode.direction")
            for number, run in (children or ChildRuns(client)).read(parent).items():
                records[number] = _merge(records.get(number), run)
        if study is not None:
            direction = study.direction.name.lower()
        trials = sorted(records.values(), key=lambda t: t.number)
        report = cls(objective or "objective", direction or "maximize", trials, study)
        if client is not None:
            report.architectures = (architectures or gallery.ArchitectureReader(client)).read(trials)
        return report

    @property
    def completed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.objective is not None]

    @property
    def pruned(self) -> list[TrialRow]:
        return [t for t in self.trials if t.state == "PRUNED"]

    @property
    def failed(self) -> list[TrialRow]:
        return [t for t in self.trials if t.state == "FAIL"]

    @property
    def cost_usd_total(self) -> float | None:
        costs = [t.cost_usd for t in self.trials if t.cost_usd is not None]
        return sum(costs) if costs else None

    def best(self, k: int = 1) -> list[TrialRow]:
        """The ``k`` best completed trials, best first."""
        ranked = sorted(
            self.completed, key=lambda t: t.objective or 0.0, reverse=self.direction == "maximize"
        )
        return ranked[:k]

    def varying_params(self) -> list[str]:
        """Parameters that take more than one value among completed trials: the searched ones."""
        seen: dict[str, set[str]] = {}
        for trial in self.completed:
            for key, value in trial.params.items():
                seen.setdefault(key, set()).add(repr(value))
        return sorted(k for k, values in seen.items() if len(values) > 1)

    def best_value_history(self, *, final: bool = True) -> list[tuple[int, float]]:
        """Best objective so far at each trial number, up to the first trial still running (or, unless
        ``final``, the first number not seen yet): a step once published never changes, even on resuming."""
        history: list[tuple[int, float]] = []
        best: float | None = None
        expected = self.trials[0].number if self.trials else 0
        for trial in self.trials:
            if trial.state not in SETTLED or (not final and trial.number != expected):
                break
            expected = trial.number + 1
            if trial.state == "COMPLETE" and trial.objective is not None:
                better = best is None or (trial.objective > best) == (self.direction == "maximize")
                best = trial.objective if better else best
            if best is not None:
                history.append((trial.number, best))
        return history

    @cached_property
    def plot_study(self) -> optuna.Study:
        """The study the plots are drawn from: the real one, or one rebuilt from the MLflow runs."""
        from hpo.reports.plots import rebuild_study

        return self.study if self.study is not None else rebuild_study(self)

    @cached_property
    def importances(self) -> dict[str, float]:
        """fANOVA importance of each searched parameter; empty (reason in ``skipped``) when unknowable."""
        from hpo.reports.plots import importances

        return importances(self)

    def write(self, out_dir: Path, *, plots: bool = True) -> list[Path]:
        """Write ``trials.csv``, the architecture gallery (once a trial has logged its architecture) and,
        with ``plots``, the plots into ``out_dir``; returns the files written."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.written = [self._write_csv(out_dir / CSV_FILE)]
        if self.architectures:
            self.written.append(gallery.write(self, self.architectures, out_dir))
        if plots:
            from hpo.reports.plots import draw

            self.written += draw(self, out_dir)
        return self.written

    def _write_csv(self, path: Path) -> Path:
        names = sorted({k for t in self.trials for k in t.params})
        head = ["number", "state", "objective", "duration_s", "fit_s", "cost_usd", "run_id", "error"]
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*head, *(f"params.{n}" for n in names)])
            for t in self.trials:
                row = [t.number, t.state, t.objective, t.duration_s, t.fit_s, t.cost_usd, t.run_id, t.error]
                writer.writerow(["" if v is None else v for v in [*row, *(t.params.get(n) for n in names)]])
        return path

    def publish(self, client: MlflowClient, parent_run_id: str, *, final: bool = True) -> None:
        """Log the files last written under ``reports/`` on the parent run, and its progress metrics:
        ``best_value`` per trial number (only steps not logged yet), ``trials_completed``, ``trials_pruned``,
        ``trials_failed`` and ``cost_usd_total`` (when they changed)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        logged = client.get_metric_history(parent_run_id, "best_value")
        last = max((m.step for m in logged), default=-1)
        metrics = [
            Metric("best_value", v, now, n) for n, v in self.best_value_history(final=final) if n > last
        ]
        current = client.get_run(parent_run_id).data.metrics
        settled = len(self.completed) + len(self.pruned) + len(self.failed)
        totals: dict[str, float] = {
            "trials_completed": len(self.completed),
            "trials_pruned": len(self.pruned),
            "trials_failed": len(self.failed),
        }
        if self.cost_usd_total is not None:
            totals["cost_usd_total"] = self.cost_usd_total
        metrics += [Metric(k, float(v), now, settled) for k, v in totals.items() if current.get(k) != v]
        for i in range(0, len(metrics), 1000):
            client.log_batch(parent_run_id, metrics=metrics[i : i + 1000])
        for path in self.written:
            client.log_artifact(parent_run_id, str(path), REPORTS_DIR)


class LiveReport:
    """Refreshes a running sweep's report as trials finish: the csv and metrics every time, the plots when
    final or at most every ``plot_interval_s`` seconds (only when final if that is infinite). Safe to call
    from several threads."""

    def __init__(
        self,
        client: MlflowClient,
        parent_run_id: str,
        out_dir: Path,
        *,
        objective: str | None = None,
        direction: str | None = None,
        plot_interval_s: float = 60.0,
    ) -> None:
        self.client, self.parent_run_id, self.out_dir = client, parent_run_id, out_dir
        self.objective, self.direction, self.plot_interval_s = objective, direction, plot_interval_s
        self._plotted_at: float | None = None
        self._children = ChildRuns(client)
        self._architectures = gallery.ArchitectureReader(client)
        self._lock = threading.Lock()

    def refresh(self, study: optuna.Study | None = None, *, final: bool = False) -> SweepReport:
        """Rebuild the report from ``study`` and the runs, write it and publish it; returns the snapshot."""
        with self._lock:
            report = SweepReport.collect(
                study,
                self.client,
                self.parent_run_id,
                objective=self.objective,
                direction=self.direction,
                children=self._children,
                architectures=self._architectures,
            )
            due = math.isfinite(self.plot_interval_s) and (
                self._plotted_at is None or time.monotonic() - self._plotted_at >= self.plot_interval_s
            )
            plots = final or due
            report.write(self.out_dir, plots=plots)
            report.publish(self.client, self.parent_run_id, final=final)
            if plots and report.completed:
                self._plotted_at = time.monotonic()
            return report


def _from_study(study: optuna.Study) -> Iterable[TrialRow]:
    for t in study.get_trials(deepcopy=False):
        yield TrialRow(
            number=t.number,
            state=t.state.name,
            objective=t.value if t.state.name == "COMPLETE" else None,
            params=dict(t.params),
            duration_s=t.duration.total_seconds() if t.duration is not None else None,
            cost_usd=_number(t.user_attrs.get("hpo.cost_usd")),
            error=t.user_attrs.get(ERROR_TAG),
        )


class ChildRuns:
    """Reads a parent run's child runs, keeping those that can no longer change between reads.

    A run is settled once it has ended and carries the state told to the study: nothing is written to it
    after both (a remote trial's state is tagged with its results, as its run ends). Each read after the
    first asks MLflow only for the runs started since the earliest unsettled one (new runs start later
    still), so a live report's cost follows the trials in flight rather than every trial of the sweep.
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self._settled: dict[str, Run] = {}
        self._since_ms: int | None = None

    def read(self, parent: Run) -> dict[int, Run]:
        """The parent's child runs by trial number; of a retried trial's runs, the finished or else latest
        one."""
        query = f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        if self._since_ms is not None:
            query += f" and attributes.start_time >= {self._since_ms}"
        fresh = self.client.search_runs([parent.info.experiment_id], filter_string=query, max_results=50000)
        runs = {**self._settled, **{run.info.run_id: run for run in fresh}}
        self._settled = {key: run for key, run in runs.items() if _is_settled(run)}
        starts = [run.info.start_time or 0 for key, run in runs.items() if key not in self._settled]
        since = min(starts) if starts else max((r.info.start_time or 0 for r in runs.values()), default=0)
        self._since_ms = since - START_MARGIN_MS
        out: dict[int, Run] = {}
        for run in sorted(runs.values(), key=lambda r: (r.info.status == "FINISHED", r.info.start_time or 0)):
            number = int(run.data.tags.get(TRIAL_NUMBER_TAG, -1))
            if number >= 0:
                out[number] = run
        return out


def _is_settled(run: Run) -> bool:
    return OPTUNA_STATE_TAG in run.data.tags and run.info.status != "RUNNING"


def _merge(record: TrialRow | None, run: Run) -> TrialRow:
    metrics, tags, info = run.data.metrics, run.data.tags, run.info
    objective = metrics.get("objective")
    state = trial_state(info.status, tags.get(OPTUNA_STATE_TAG), objective, tags.get(PRUNED_TAG) == "true")
    wall = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    overrides = override_values(tags.get("hpo.overrides"))
    out = record or TrialRow(int(tags[TRIAL_NUMBER_TAG]), state, objective, overrides, wall)
    out.params = {**overrides, **out.params}
    out.run_id, out.fit_s = info.run_id, metrics.get("fit_s")
    out.error = tags.get(ERROR_TAG) or out.error
    cost = _number(metrics.get("cost_usd", tags.get("hpo.cost_usd")))
    out.cost_usd = cost if cost is not None else out.cost_usd
    if out.duration_s is None:
        out.duration_s = metrics.get("trial_s", wall)
    return out


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None
