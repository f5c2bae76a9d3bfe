"""The sweep's outcome: counts, the best trial and ``optimization_results.yaml``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpo.records.sweep_runs import TrialRun

RESULTS_FILE = "optimization_results.yaml"
# the Optuna state of a trial whose run ended so without having been tagged with one
_RUN_STATES = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "FAIL"}


def trial_state(
    run_status: str, optuna_state: str | None, objective: float | None, pruned: bool = False
) -> str:
    """What became of a trial, as every report counts it: the Optuna state its run was tagged with, else
    PRUNED for a run that ended ``pruned``, else the state its run's end implies; a trial that completed
    without an objective failed."""
    ended = run_status in _RUN_STATES
    state = optuna_state or ("PRUNED" if pruned and ended else _RUN_STATES.get(run_status, "RUNNING"))
    return "FAIL" if state == "COMPLETE" and objective is None else state


def override_values(overrides: str | None) -> dict[str, Any]:
    """A trial's overrides (a JSON list, as its run's ``hpo.overrides`` tag holds them) as values, read as
    Hydra reads them (``lr=1e-05`` is a float, which YAML 1.1 would leave a string); {} when unreadable."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(json.loads(overrides or "[]"))
    except (ValueError, HydraException):
        return {}
    return {o.key_or_group: o.value() for o in parsed}


@dataclass
class SweepResults:
    """What a sweep achieved, read from its trials' MLflow runs."""

    objective: str
    direction: str
    trials: list[TrialRun]
    # the parameters the sweep searched (the search space's names); empty: every override of a trial
    searched: Sequence[str] = field(default_factory=list)

    @property
    def completed(self) -> list[TrialRun]:
        return [t for t in self.trials if self._state(t) == "COMPLETE"]

    @property
    def pruned(self) -> list[TrialRun]:
        return [t for t in self.trials if self._state(t) == "PRUNED"]

    @property
    def failed(self) -> list[TrialRun]:
        return [t for t in self.trials if self._state(t) == "FAIL"]

    @staticmethod
    def _state(trial: TrialRun) -> str:
        return trial_state(trial.status, trial.optuna_state, trial.objective, trial.pruned)

    def params(self, trial: TrialRun) -> dict[str, Any]:
        """The searched parameters' values in ``trial`` (every override where the search space is unknown)."""
        values = override_values(trial.overrides)
        return {k: v for k, v in values.items() if k in self.searched} if self.searched else values

    @property
    def best(self) -> TrialRun | None:
        done = self.completed
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: float(t.objective))  # type: ignore[arg-type]

    def as_dict(self, mlflow_info: dict[str, Any], study: dict[str, str] | None = None) -> dict[str, Any]:
        best = self.best
        out = {
            "name": "hpo",
            "objective": self.objective,
            "direction": self.direction,
            "best_value": best.objective if best else None,
            "best_trial": best.trial_number if best else None,
            "best_params": self.params(best) if best else {},
            "n_trials": len(self.trials),
            "n_completed": len(self.completed),
            "n_pruned": len(self.pruned),
            "n_failed": len(self.failed),
            "mlflow": {**mlflow_info, "best_run_id": best.run_id if best else None},
        }
        if study is not None:
            out["study"] = dict(study)
        return out

    def write(
        self, sweep_dir: Path, mlflow_info: dict[str, Any], study: dict[str, str] | None = None
    ) -> Path:
        path = sweep_dir / RESULTS_FILE
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.as_dict(mlflow_info, study), sort_keys=False))
        return path

    def describe(self) -> str:
        """A short human summary for the end of a sweep."""
        best = self.best
        pruned = f", {len(self.pruned)} pruned" if self.pruned else ""
        head = (
            f"{len(self.completed)} of {len(self.trials)} trials completed{pruned}, {len(self.failed)} failed"
        )
        if best is None:
            return head
        params = " ".join(f"{k}={v}" for k, v in self.params(best).items())
        return f"{head}; best trial #{best.trial_number}: {self.objective}={best.objective:.4f}  {params}"
