"""A sweep's record: the MLflow parent run opened before the first trial and closed with the outcome."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hpo.results import RESULTS_FILE, SweepResults
from hpo.schema import PAYLOAD_KEYS
from hpo.tracking import PARENT_RUN_ENV, ParentRun, resolve_tracking_uri


class Sweep:
    """A running sweep: its directory, its MLflow parent run, and how to close both."""

    def __init__(self, config: DictConfig) -> None:
        hydra_cfg = config.hydra
        self.sweep_dir = Path(str(hydra_cfg.sweep.dir))
        self.objective = str(config.mode.objective)
        self.direction = str(config.mode.direction)
        self.tracking_uri = resolve_tracking_uri(str(config.mlflow.tracking_uri), hydra_cfg.runtime.cwd)
        self.experiment_name = str(config.mlflow.experiment_name)
        self.parent = ParentRun(
            self.tracking_uri,
            self.experiment_name,
            run_name=f"sweep {self.sweep_dir.name}",
            tags={"hpo.kind": "sweep", "hpo.sweep_dir": str(self.sweep_dir.resolve())},
        )
        job_config = OmegaConf.to_container(OmegaConf.masked_copy(config, list(PAYLOAD_KEYS)), resolve=True)
        sweeper = OmegaConf.to_container(hydra_cfg.sweeper, resolve=True)
        assert isinstance(job_config, dict) and isinstance(sweeper, dict)
        self.parent.log_config(
            {
                **{str(k): v for k, v in job_config.items()},
                "sweep": {k: v for k, v in sweeper.items() if k not in ("_target_", "params")},
                "search_space": sweeper.get("params") or {},
            }
        )
        os.environ[PARENT_RUN_ENV] = self.parent.run_id

    @property
    def results_path(self) -> Path:
        return self.sweep_dir / RESULTS_FILE

    def close(self, status: str) -> SweepResults:
        """Write the results file, log it to the parent run and end that run with ``status``."""
        trials = self.parent.end_orphans("KILLED" if status == "KILLED" else "FAILED")
        results = SweepResults(self.objective, self.direction, trials)
        mlflow_info = {
            "tracking_uri": self.tracking_uri,
            "experiment_name": self.experiment_name,
            "parent_run_id": self.parent.run_id,
        }
        path = results.write(self.sweep_dir, mlflow_info)
        metrics: dict[str, float] = {
            "trials_completed": len(results.completed),
            "trials_failed": len(results.failed),
        }
        best = results.best
        if best is not None and best.objective is not None:
            metrics[f"best_{self.objective}"] = best.objective
        self.parent.finish(status, metrics, [path])
        os.environ.pop(PARENT_RUN_ENV, None)
        return results

    def failure_summary(self, results: SweepResults) -> str | None:
        """Why the sweep produced nothing, when every trial failed."""
        if not results.trials or results.completed:
            return None
        first = results.failed[0]
        return (
            f"all {len(results.trials)} trials failed; trial #{first.trial_number}: {first.error} "
            f"(logs under {self.sweep_dir})"
        )
