"""One trial on a RunPod endpoint: submitted, polled, resubmitted after infrastructure failures, closed.

``done()`` never blocks for long: each call makes at most one paced request, and a transient failure
only schedules the next try (exponential backoff with jitter), so one slow job never stalls the others.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import Container, OmegaConf

from hpo.core.errors import BackendError, DatasetError, HPOError, TrialError
from hpo.core.names import OPTUNA_STATE_TAG
from hpo.core.payload import JOBS_HELD_PER_WORKER, WORKER_WAIT_KEY
from hpo.core.trial_record import TrialRunRecord
from launchers.backend import JobHandle
from launchers.hydra_job import JobSpec
from launchers.runpod.client import EndpointClient, TransientError, UnknownJobError

log = logging.getLogger(__name__)

RUNNING_STATES = ("IN_QUEUE", "IN_PROGRESS")


@dataclass
class JobPolicy:
    """How the backend treats every job: polling pace, resubmissions, time limit and price."""

    poll_interval_s: float
    max_retries: int
    timeout_s: float
    price_per_hour: float


def trial_error(output_error: Any) -> HPOError | None:
    """A failure the worker reported for the trial itself (a ``DatasetError`` where its dataset failed), or
    None for any other failure.

    hpo's worker reports trial failures as a JSON object with an ``hpo_error`` key; the SDK reports an
    exception escaping a handler as one with ``error_message``; anything else (a lost worker, RunPod's
    own errors) is the infrastructure's.
    """
    try:
        data = json.loads(output_error) if isinstance(output_error, str) else output_error
    except ValueError:
        return None
    if isinstance(data, dict) and "hpo_error" in data:
        kind = DatasetError if data["hpo_error"] == "dataset" else TrialError
        return kind(str(data.get("message")))
    if isinstance(data, dict) and "error_message" in data:
        return TrialError(f"{data.get('error_type', 'error')}: {data['error_message']}")
    return None


class RunPodJobHandle(JobHandle):
    """A trial running (or about to run, or to be run again) on the endpoint."""

    def __init__(
        self,
        client: EndpointClient,
        spec: JobSpec,
        payload: dict[str, Any],
        record: TrialRunRecord,
        policy: JobPolicy,
    ) -> None:
        self.client = client
        self.spec = spec
        self.payload = payload
        self.record = record
        # the trial's MLflow run, which the driver opened
        self.run_id: str | None = record.run_id
        self.policy = policy
        self.job_id: str | None = None
        self.retries = 0
        self.cost_usd: float = 0.0
        self.progress: dict[str, Any] | None = None
        # the Optuna state tagged with the run's outcome, saving the sweep a write once it is told
        self.optuna_state: str | None = None
        self._transient = 0
        self._next_at = 0.0
        self._outcome: JobReturn | HPOError | None = None
        self.trial_dir = Path(str(spec.config.hydra.sweep.dir)) / str(spec.config.hydra.sweep.subdir)
        save_job_config(spec, self.trial_dir)

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        if time.monotonic() < self._next_at:
            return False
        try:
            if self.job_id is None:
                # a held job's clock runs while it waits for the trial before it on the worker
                self.job_id = self.client.run(self.payload, self.policy.timeout_s * JOBS_HELD_PER_WORKER)
                log.info(f"#{self.spec.num} queued on RunPod as job {self.job_id}")
                self._next_at = time.monotonic() + self.policy.poll_interval_s
            else:
                self._poll()
            self._transient = 0
        except TransientError as exc:
            self._transient += 1
            if self._transient >= self.client.backoff.attempts:
                self._infrastructure_failure(f"RunPod requests kept failing ({exc})")
            else:
                delay = self.client.backoff.delay(self._transient - 1)
                log.info(f"#{self.spec.num}: RunPod answered {exc}; trying again in {delay:.1f}s")
                self._next_at = time.monotonic() + delay
        except UnknownJobError:
            self._infrastructure_failure(f"the endpoint no longer knows job {self.job_id}")
        except BackendError as exc:
            self._fail(str(exc))
        return self._outcome is not None

    def result(self) -> JobReturn:
        assert self._outcome is not None
        if isinstance(self._outcome, HPOError):
            raise self._outcome
        return self._outcome

    def cancel(self) -> None:
        """Cancel the job on the endpoint (so nothing keeps billing) and close its run as KILLED."""
        if self._outcome is not None:
            return
        if self.job_id is not None:
            job_id = self.job_id
            try:
                self.client.call_with_retries(lambda: self.client.cancel(job_id), f"cancel job {job_id}")
            except BackendError as exc:
                log.error(
                    f"#{self.spec.num}: could not cancel RunPod job {job_id} ({exc}): cancel it by hand"
                )
        self.record.end("KILLED", "cancelled: the sweep was interrupted", self._job_tags())
        self._outcome = BackendError(f"trial #{self.spec.num} cancelled")

    def _poll(self) -> None:
        assert self.job_id is not None
        status = self.client.status(self.job_id)
        state = str(status.get("status"))
        if state in RUNNING_STATES:
            self._show_progress(status.get("output") if state == "IN_PROGRESS" else None)
            self._next_at = time.monotonic() + self.policy.poll_interval_s
            return
        self.cost_usd += billed_ms(status) / 3.6e6 * self.policy.price_per_hour
        if state == "COMPLETED":
            self._complete(status)
        elif state == "FAILED" and (error := trial_error(status.get("error"))) is not None:
            self._fail(str(error), type(error))
        else:
            reason = status.get("error") or "no reason given"
            self._infrastructure_failure(f"job {self.job_id} ended {state}: {str(reason)[:300]}")

    def _show_progress(self, output: Any) -> None:
        if isinstance(output, dict) and output != self.progress:
            self.progress = output
            epoch, epochs, value = output.get("epoch"), output.get("epochs"), output.get("val_accuracy")
            shown = f" val_accuracy={value:.4f}" if isinstance(value, int | float) else ""
            log.info(f"#{self.spec.num} epoch {epoch}/{epochs}{shown}")

    def _complete(self, status: dict[str, Any]) -> None:
        output = status.get("output")
        objective = output.get("objective") if isinstance(output, dict) else None
        if not isinstance(objective, int | float) or not math.isfinite(objective):
            self._fail(f"the worker returned no finite objective (output: {str(output)[:200]})")
            return
        assert isinstance(output, dict)
        if warning := output.get("device_warning"):
            log.warning(f"#{self.spec.num} on worker {output.get('worker_id')}: {warning}")
        self._write_result(output)
        self.optuna_state = "COMPLETE"
        self.record.complete(output.get("run"), {"cost_usd": self.cost_usd}, self._tags(status))
        ret = JobReturn(
            overrides=self.spec.overrides,
            cfg=self.spec.config,
            hydra_cfg=self.spec.config.hydra,
            working_dir=str(self.trial_dir),
            task_name=str(self.spec.config.hydra.job.name),
            status=JobStatus.COMPLETED,
        )
        ret.return_value = float(objective)
        self._outcome = ret

    def _infrastructure_failure(self, reason: str) -> None:
        if self.retries < self.policy.max_retries:
            self.retries += 1
            log.warning(
                f"#{self.spec.num}: {reason}; resubmitting (retry {self.retries}/{self.policy.max_retries})"
            )
            self.record.tag({"hpo.retries": self.retries, "hpo.last_retry_reason": reason})
            self.job_id, self._transient, self._next_at = None, 0, 0.0
        else:
            self._fail(f"{reason} (after {self.retries} retries)")

    def _fail(self, message: str, kind: type[HPOError] = TrialError) -> None:
        self.optuna_state = "FAIL"
        self.record.end("FAILED", message, self._job_tags())
        self._outcome = kind(f"trial #{self.spec.num}: {message}")

    def _job_tags(self) -> dict[str, Any]:
        """What the run records of the job however it ended: written once, with its end, to save the
        driver a store write per trial; with the state the study will be told of a trial that ended."""
        job = {"hpo.runpod_job_id": self.job_id} if self.job_id else {}
        state = {OPTUNA_STATE_TAG: self.optuna_state} if self.optuna_state else {}
        return {**job, **state, "hpo.retries": self.retries, "hpo.cost_usd": f"{self.cost_usd:.6f}"}

    def _tags(self, status: dict[str, Any]) -> dict[str, Any]:
        output = status["output"]
        return {
            **self._job_tags(),
            "hpo.backend": "runpod",
            "hpo.worker_id": status.get("workerId") or output.get("worker_id", ""),
            "hpo.runpod_delay_ms": status.get("delayTime", ""),
            "hpo.runpod_execution_ms": status.get("executionTime", ""),
        }

    def _write_result(self, output: dict[str, Any]) -> None:
        summary = {k: v for k, v in output.items() if k != "run"}
        summary.update(job_id=self.job_id, retries=self.retries, cost_usd=self.cost_usd)
        (self.trial_dir / "result.json").write_text(json.dumps(summary, indent=2, default=str))


def billed_ms(status: dict[str, Any]) -> float:
    """The job's execution time on its worker less the time it waited there for the trial before it,
    which that trial's cost already counts."""
    output = status.get("output")
    waited_s = output.get(WORKER_WAIT_KEY) if isinstance(output, dict) else None
    waited_ms = 1000 * float(waited_s) if isinstance(waited_s, int | float) else 0.0
    return max(float(status.get("executionTime") or 0) - waited_ms, 0.0)


def save_job_config(spec: JobSpec, trial_dir: Path) -> None:
    """Save the trial's config and overrides under its directory, as Hydra's ``run_job`` does locally
    (the same YAML, written by libyaml, which is cheaper than OmegaConf's own writer)."""
    hydra_dir = trial_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    task_cfg = {
        str(k): OmegaConf.to_container(v, enum_to_str=True) if isinstance(v, Container) else v
        for k, v in spec.config.items_ex(resolve=False)
        if k != "hydra"
    }
    (hydra_dir / "config.yaml").write_text(_yaml(task_cfg))
    (hydra_dir / "overrides.yaml").write_text(_yaml(list(spec.overrides)))


def _yaml(data: Any) -> str:
    return yaml.dump(
        data, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
