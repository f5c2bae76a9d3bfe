"""The sweep's outcome: counts, the best trial and ``optimization_results.yaml``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpo.records.sweep_runs import TrialRun

RESULTS_FILE = "optimization_results.yaml"


@dataclass
class SweepResults:
    """What a sweep achieved, read from its trials' MLflow runs."""

    objective: str
    direction: str
    trials: list[TrialRun]

    @property
    def completed(self) -> list[TrialRun]:
        return [t for t in self.trials if t.status == "FINISHED" and t.objective is not None]

    @property
    def failed(self) -> list[TrialRun]:
        return [t for t in self.trials if t.status != "FINISHED"]

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
            "best_params": _params(best.overrides) if best else {},
            "n_trials": len(self.trials),
            "n_completed": len(self.completed),
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
        head = f"{len(self.completed)} of {len(self.trials)} trials completed, {len(self.failed)} failed"
        if best is None:
            return head
        params = " ".join(json.loads(best.overrides or "[]"))
        return f"{head}; best trial #{best.trial_number}: {self.objective}={best.objective:.4f}  {params}"


def _params(overrides: str) -> dict[str, Any]:
    """The values of a trial's overrides, read as Hydra reads them (``lr=1e-05`` is a float, which YAML 1.1
    would leave a string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(json.loads(overrides or "[]"))
    return {o.key_or_group: o.value() for o in parsed}
