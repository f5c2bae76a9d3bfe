"""One trial on a RunPod endpoint: submitted, polled, resubmitted after infrastructure failures, closed.

``done()`` never blocks for long: each call makes at most one paced request, and a transient failure
only schedules the next try (exponential backoff with jitter, or RunPod's ``Retry-After``), so one slow job
never stalls the others. A trial has at most one live job: before it is resubmitted, a job that may still
live is cancelled and confirmed final, and a ``/run`` whose answer was lost is reconciled with the
endpoint's job counts first (RunPod has no idempotency key and no job listing).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import Container, OmegaConf

from hpo.core.errors import BackendError, DatasetError, DeviceError, EndpointError, HPOError, TrialError
from hpo.core.names import OPTUNA_STATE_TAG, PRUNED_EPOCH_TAG, PRUNED_TAG
from hpo.core.payload import JOBS_HELD_PER_WORKER, WORKER_WAIT_KEY
from hpo.core.run_bundle import curves_bundle
from hpo.core.trial_record import TrialRunRecord
from launchers.backend import JobHandle, settled
from launchers.hydra_job import JobSpec, failed_return
from launchers.runpod.client import AnswerLost, EndpointClient, TransientError, UnknownJobError
from launchers.runpod.cost import CostMeter

log = logging.getLogger(__name__)

QUEUED = "IN_QUEUE"
# RunPod documents RUNNING beside IN_PROGRESS: both mean a worker has the job
IN_PROGRESS_STATES = ("IN_PROGRESS", "RUNNING")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
# polls of a cancelled job not yet final between two cancel requests
CANCEL_REPEAT_POLLS = 10
# seconds a pruned job's worker (mlflow.log_from=worker) has, once the job is final, to end its run (KILLED,
# as a cancel) before the driver ends it pruned: later, the worker's end would overwrite the driver's
WORKER_RUN_END_S = 30.0


@dataclass
class JobPolicy:
    """How the backend treats every job: polling pace, resubmissions, time limits and price."""

    poll_interval_s: float
    max_retries: int
    timeout_s: float
    # USD per worker-hour; None: the endpoint's GPU catalog price (the fleet's cost meter knows it)
    price_per_hour: float | None = None
    retry_timeouts: bool = False
    queue_timeout_s: float = 600.0

    @property
    def execution_timeout_s(self) -> float:
        """RunPod's execution timeout of every job, first or resubmitted: a job held by a worker runs its
        clock while it waits there for the trial before it, which may take up to ``timeout_s``."""
        return self.timeout_s * JOBS_HELD_PER_WORKER


@dataclass
class Fleet:
    """The backend's jobs on the endpoint, shared by its handles: which are live (not yet seen final, with
    whether each has normal priority), how many workers the sweep runs, and the cost meter."""

    endpoint_id: str
    workers: int
    meter: CostMeter | None = None
    live: dict[str, bool] = field(default_factory=dict)

    def normal_live(self) -> int:
        return sum(self.live.values())

    def price_for(self, worker_id: str | None, policy: JobPolicy) -> float:
        if self.meter is not None:
            return self.meter.price_for(worker_id)
        return policy.price_per_hour or 0.0

    def job_ended(self, job_id: str, worker_id: str | None, cost_usd: float) -> None:
        self.live.pop(job_id, None)
        if self.meter is not None:
            self.meter.job_ended(worker_id, cost_usd)

    def no_worker_for(self, since: float) -> float | None:
        """Seconds since ``since`` (or since no worker was starting or up, if later) during which none was;
        None when one is, or the workers were never read."""
        if self.meter is None or self.meter.no_live_since is None:
            return None
        return time.time() - max(since, self.meter.no_live_since)

    def workers_text(self) -> str:
        return self.meter.workers_text() if self.meter is not None else "workers unknown"


def trial_error(output_error: Any) -> HPOError | None:
    """A failure the worker reported (a ``DatasetError`` where its dataset failed, a ``DeviceError`` where it
    saw fewer GPUs than promised), or None for any other failure.

    hpo's worker reports failures as a JSON object with an ``hpo_error`` key; the SDK reports an
    exception escaping a handler as one with ``error_message``; anything else (a lost worker, RunPod's
    own errors) is the infrastructure's.
    """
    try:
        data = json.loads(output_error) if isinstance(output_error, str) else output_error
    except ValueError:
        return None
    if isinstance(data, dict) and "hpo_error" in data:
        kinds: dict[str, type[HPOError]] = {"dataset": DatasetError, "devices": DeviceError}
        return kinds.get(str(data["hpo_error"]), TrialError)(str(data.get("message")))
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
        fleet: Fleet,
    ) -> None:
        self.client = client
        self.spec = spec
        self.payload = payload
        self.record = record
        # the trial's MLflow run, which the driver opened
        self.run_id: str | None = record.run_id
        self.policy = policy
        self.fleet = fleet
        self.job_id: str | None = None
        self.retries = 0
        self.cost_usd: float = 0.0
        self.progress: dict[str, Any] | None = None
        # the Optuna state tagged with the run's outcome, saving the sweep a write once it is told
        self.optuna_state: str | None = None
        self._transient = 0
        # when the current streak of failed requests began (None: the last request succeeded)
        self._failing_since: float | None = None
        self._next_at = 0.0
        self._outcome: JobReturn | HPOError | None = None
        # an earlier job of this trial to cancel and see final before the trial is submitted again
        self._retiring: str | None = None
        self._retire_polls = 0
        # reconciling a /run whose answer was lost: "health", "purge", "recheck" (None: nothing lost)
        self._lost: str | None = None
        self._queued_since: float | None = None
        self._worker_id: str | None = None
        self._warned_states: set[str] = set()
        # pruned: the job was stopped and its run ends pruned once the job is final (and, where the worker
        # logs to the run, once the worker has ended it: from when it was first seen final)
        self._pruning = False
        self._pruned_final_at: float | None = None
        self.trial_dir = Path(str(spec.config.hydra.sweep.dir)) / str(spec.config.hydra.sweep.subdir)
        save_job_config(spec, self.trial_dir)

    def follow(self, job_id: str) -> None:
        """Follow a job an earlier driver submitted instead of submitting one."""
        self.job_id = job_id
        self.fleet.live[job_id] = True

    def done(self) -> bool:
        if self._outcome is not None:
            return True
        if time.monotonic() < self._next_at:
            return False
        try:
            if self._retiring is not None:
                self._retire_step(self._retiring)
            elif self._lost is not None:
                self._reconcile_step(self._lost)
            elif self.job_id is None:
                self._submit()
            else:
                self._poll(self.job_id)
            self._transient, self._failing_since = 0, None
        except TransientError as exc:
            # an API outage changes nothing on the endpoint: keep asking, backing off, for as long as a
            # trial may run, rather than resubmit a job that may well be training
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            self._transient += 1
            if now - self._failing_since >= self.policy.timeout_s:
                self._requests_failing(f"{exc}, for {now - self._failing_since:.0f} s")
            else:
                attempt = min(self._transient, self.client.backoff.attempts) - 1
                delay = self.client.backoff.delay(attempt, exc)
                log.info(f"#{self.spec.num}: RunPod answered {exc}; trying again in {delay:.1f}s")
                self._next_at = now + delay
        except AnswerLost as exc:
            log.warning(f"#{self.spec.num}: {exc}; checking the endpoint's job counts before resubmitting")
            self._lost, self._transient = "health", 0
        except UnknownJobError:
            if self._retiring is not None:
                self._retired(self._retiring)
            else:
                assert self.job_id is not None
                self.fleet.live.pop(self.job_id, None)
                self._infrastructure_failure(f"the endpoint no longer knows job {self.job_id}")
        except EndpointError as exc:
            self._fail(str(exc), EndpointError)
        except BackendError as exc:
            self._fail(str(exc))
        return self._outcome is not None

    def result(self) -> JobReturn:
        return settled(self._outcome)

    def cancel(self) -> None:
        """Cancel the job on the endpoint (so nothing keeps billing) and close its run as KILLED."""
        if self._outcome is not None:
            return
        for job_id in (self.job_id, self._retiring):
            if job_id is None or job_id not in self.fleet.live:
                continue
            try:
                self.client.call_with_retries(partial(self.client.cancel, job_id), f"cancel job {job_id}")
            except UnknownJobError:
                pass
            except BackendError as exc:
                log.error(
                    f"#{self.spec.num}: could not cancel RunPod job {job_id} ({exc}): cancel it by hand"
                )
            self.fleet.job_ended(job_id, self._worker_id, 0.0)
        self.record.end("KILLED", "cancelled: the sweep was interrupted", self._job_tags())
        self._outcome = BackendError(f"trial #{self.spec.num} cancelled")

    def prune(self) -> None:
        """Stop the job as RunPod stops one (its trial leaves at the next batch and the worker stays for its
        next job), then, once the job is final, end the run FINISHED and tagged pruned, with the curves the
        progress updates carried: the worker cannot tell a prune from a cancel, so the driver marks the run.
        A job that completes before the stop lands comes back completed."""
        if self._outcome is not None or self._pruning:
            return
        self._pruning = True
        if self.job_id is None or self.job_id not in self.fleet.live:
            self._end_pruned()
            return
        try:
            self.client.call_with_retries(
                partial(self.client.cancel, self.job_id), f"prune job {self.job_id}"
            )
        except UnknownJobError:
            pass
        except BackendError as exc:
            log.warning(
                f"#{self.spec.num}: could not stop RunPod job {self.job_id} ({exc}); it runs to its end"
            )

    @property
    def _worker_logs_run(self) -> bool:
        """Whether the worker logs to the trial's run itself (``mlflow.log_from=worker``: the payload names
        the run), rather than sending its curves for the driver to replay."""
        return self.payload["mlflow"]["run_id"] is not None

    def _worker_still_logging(self) -> bool:
        """Whether a worker that logs to the run itself (``mlflow.log_from=worker``) has yet to end the pruned
        job's run: it cannot tell a prune from a cancel, so it ends it KILLED, and the driver ends it pruned
        after that (or after ``WORKER_RUN_END_S``, for a worker that never does)."""
        if not self._worker_logs_run:
            return False
        now = time.monotonic()
        self._pruned_final_at = self._pruned_final_at or now
        return now - self._pruned_final_at < WORKER_RUN_END_S and self.record.running()

    def _end_pruned(self) -> None:
        progress = self.progress or {}
        epoch = int(progress.get("epoch") or 0)
        curves = None if self._worker_logs_run else progress.get("curves")
        self.optuna_state = "PRUNED"
        tags = {**self._job_tags(), "hpo.backend": "runpod", PRUNED_TAG: "true", PRUNED_EPOCH_TAG: epoch}
        self.record.complete(curves_bundle(curves) if curves else None, {"cost_usd": self.cost_usd}, tags)
        self._outcome = failed_return(
            self.spec, TrialError(f"trial #{self.spec.num} pruned after epoch {epoch}")
        )

    def _submit(self) -> None:
        # beyond the sweep's workers, a job waits for a busy worker instead of making the endpoint start one
        low = self.fleet.normal_live() >= self.fleet.workers
        self.job_id = self.client.run(self.payload, self.policy.execution_timeout_s, low)
        self.fleet.live[self.job_id] = not low
        self._queued_since, self._worker_id = time.time(), None
        priority = " (low priority: queued ahead)" if low else ""
        log.info(f"#{self.spec.num} queued on RunPod as job {self.job_id}{priority}")
        self._next_at = time.monotonic() + self.policy.poll_interval_s

    def _poll(self, job_id: str) -> None:
        status = self.client.status(job_id)
        state = str(status.get("status"))
        self._next_at = time.monotonic() + self.policy.poll_interval_s
        self._worker_id = status.get("workerId") or self._worker_id
        if state == QUEUED:
            self._queued_since = self._queued_since or time.time()
            self._check_queue(job_id)
            return
        self._queued_since = None
        if state in IN_PROGRESS_STATES:
            if not self._pruning:
                self._show_progress(status.get("output"))
            return
        if state not in FINAL_STATES:
            if state not in self._warned_states:
                self._warned_states.add(state)
                log.warning(
                    f"#{self.spec.num}: RunPod job {job_id} is in unknown state {state!r}; still polling"
                )
            return
        self._count_cost(job_id, status)
        if state == "COMPLETED":
            self._complete(status)
        elif self._pruning:
            if not self._worker_still_logging():
                self._end_pruned()
        elif state == "FAILED":
            error = trial_error(status.get("error"))
            if error is None or isinstance(error, DeviceError):
                reason = str(error) if error is not None else str(status.get("error") or "no reason given")
                self._infrastructure_failure(f"job {job_id} failed: {reason[:300]}")
            else:
                self._fail(str(error), type(error))
        elif state == "CANCELLED" and not status.get("executionTime") and not status.get("workerId"):
            log.info(
                f"#{self.spec.num}: job {job_id} was cancelled before it started (queue purged?); "
                "resubmitting"
            )
            self._resubmit()
        elif state == "TIMED_OUT" and not self.policy.retry_timeouts:
            self._fail(
                f"job {job_id} hit RunPod's execution timeout ({self.policy.execution_timeout_s:.0f}s): "
                "raise launcher.timeout_min, or set launcher.runpod.retry_timeouts=true to resubmit it"
            )
        else:
            reason = status.get("error") or "no reason given"
            self._infrastructure_failure(f"job {job_id} ended {state}: {str(reason)[:300]}")

    def _check_queue(self, job_id: str) -> None:
        """Stop the sweep when the job has waited ``queue_timeout_s`` while no worker was starting or up; a
        queued-ahead job left with no worker is resubmitted at normal priority, so one is started for it."""
        waited = self.fleet.no_worker_for(self._queued_since or time.time())
        if waited is None:
            return
        if not self.fleet.live.get(job_id, True) and self.fleet.normal_live() < self.fleet.workers:
            log.info(
                f"#{self.spec.num}: job {job_id} waits with no worker up; resubmitting at normal priority"
            )
            self._retire(job_id)
            self._resubmit()
        elif waited >= self.policy.queue_timeout_s:
            raise EndpointError(
                f"job {job_id} waited {waited:.0f}s in the queue of endpoint "
                f"{self.fleet.endpoint_id} with no worker starting ({self.fleet.workers_text()}): check the "
                "endpoint's GPU pools' availability and max workers in the RunPod console"
            )

    def _retire_step(self, job_id: str) -> None:
        """One step of retiring an earlier job: cancel it, then poll until it is final (re-cancelling now and
        then), never submitting meanwhile."""
        if self._retire_polls % CANCEL_REPEAT_POLLS == 0:
            self.client.cancel(job_id)
            self._retire_polls += 1
            return
        status = self.client.status(job_id)
        self._retire_polls += 1
        if str(status.get("status")) in FINAL_STATES:
            self._count_cost(job_id, status)
            self._retired(job_id)
        else:
            self._next_at = time.monotonic() + self.policy.poll_interval_s

    def _retired(self, job_id: str) -> None:
        log.info(f"#{self.spec.num}: earlier job {job_id} is stopped")
        self.fleet.live.pop(job_id, None)
        self._retiring, self._retire_polls, self._next_at = None, 0, 0.0

    def _reconcile_step(self, stage: str) -> None:
        """One step of finding out whether a ``/run`` whose answer was lost created a job: compare the
        endpoint's queued and running jobs with this sweep's live ones; more means a job nobody tracks, so
        the queue is purged (this sweep's own queued jobs come back cancelled unstarted and are resubmitted)
        and the counts compared again."""
        if stage == "purge":
            self.client.purge_queue()
            self._lost = "recheck"
            # the other handles see their purged jobs cancelled within a poll or two
            self._next_at = time.monotonic() + 2 * self.policy.poll_interval_s
            return
        jobs = self.client.health().get("jobs") or {}
        untracked = int(jobs.get("inQueue") or 0) + int(jobs.get("inProgress") or 0) - len(self.fleet.live)
        if untracked > 0 and stage == "health":
            log.warning(
                f"#{self.spec.num}: the endpoint has {untracked} job(s) this sweep does not track: "
                "purging its queue"
            )
            self._lost = "purge"
            return
        if untracked > 0:
            log.warning(
                f"#{self.spec.num}: a job from its lost /run answer may be running on endpoint "
                f"{self.fleet.endpoint_id}; it cannot be cancelled without its id and bills until it ends"
            )
        self._lost = None
        self._resubmit()

    def _requests_failing(self, reason: str) -> None:
        message = f"RunPod requests kept failing ({reason})"
        if self._retiring is not None:
            self._fail(f"{message}: could not confirm job {self._retiring} stopped; cancel it by hand")
        elif self._lost is not None:
            self._fail(f"{message}: could not tell whether a lost /run created a job; check the endpoint")
        else:
            self._infrastructure_failure(message)

    def _count_cost(self, job_id: str, status: dict[str, Any]) -> None:
        worker = status.get("workerId") or self._worker_id
        cost = billed_ms(status) / 3.6e6 * self.fleet.price_for(worker, self.policy)
        self.cost_usd += cost
        self.fleet.job_ended(job_id, worker, cost)

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
        """Resubmit the trial (a counted retry) after the infrastructure lost it, or fail it once out of
        retries; a job that may still live is retired first."""
        if self.retries >= self.policy.max_retries:
            self._fail(f"{reason} (after {self.retries} retries)")
            return
        self.retries += 1
        log.warning(
            f"#{self.spec.num}: {reason}; resubmitting (retry {self.retries}/{self.policy.max_retries})"
        )
        self.record.tag({"hpo.retries": self.retries, "hpo.last_retry_reason": reason})
        if self.job_id is not None and self.job_id in self.fleet.live:
            self._retire(self.job_id)
        self._resubmit()

    def _retire(self, job_id: str) -> None:
        self._retiring, self._retire_polls = job_id, 0

    def _resubmit(self) -> None:
        self.job_id, self._transient, self._next_at = None, 0, 0.0

    def _fail(self, message: str, kind: type[HPOError] = TrialError) -> None:
        """End the trial failed; a job of it that may still live gets one cancel request, unconfirmed."""
        for job_id in (self.job_id, self._retiring):
            if job_id is not None and job_id in self.fleet.live:
                try:
                    self.client.cancel(job_id)
                except (HPOError, TransientError) as exc:
                    log.warning(f"#{self.spec.num}: could not cancel RunPod job {job_id} ({exc})")
                self.fleet.job_ended(job_id, self._worker_id, 0.0)
        self.optuna_state = "FAIL"
        self.record.end("FAILED", message, self._job_tags())
        self._outcome = kind(f"trial #{self.spec.num}: {message}")

    def _job_tags(self) -> dict[str, Any]:
        """What the run records of the job however it ended: written once, with its end, to save the
        driver a store write per trial; with the state the study will be told of a trial that ended."""
        job = {"hpo.runpod_job_id": self.job_id} if self.job_id else {}
        state = {OPTUNA_STATE_TAG: self.optuna_state} if self.optuna_state else {}
        return {**job, **state, "hpo.retries": self.retries, "hpo.cost_usd": f"{self.cost_usd:.6g}"}

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
