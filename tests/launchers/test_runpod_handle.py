"""One trial on RunPod, against a scripted endpoint: which job states end it, at most one live job per trial,
which failures are resubmitted, a lost ``/run`` answer reconciled, the queue timeout, queue-ahead priority."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from hpo.core.errors import EndpointError, TrialError
from launchers.hydra_job import JobSpec
from launchers.runpod.cost import CostMeter, PriceList
from launchers.runpod.job import Fleet, JobPolicy, RunPodJobHandle
from launchers.runpod.rest import RestClient
from tests.launchers import test_runpod_client
from tests.launchers.test_runpod_client import HANG, Answer, FakeRunPod, ok

fake = test_runpod_client.fake  # the scripted endpoint, a fixture

DONE = {"objective": 0.9}


class Record:
    """A trial's run record that remembers what it was told."""

    run_id = "run-1"

    def __init__(self) -> None:
        self.tags: dict[str, Any] = {}
        self.ended: tuple[str, str] | None = None
        self.replayed: Any = None
        # a worker that logs to the run itself still has it open, for this many more status reads
        self.open_for = 0

    def running(self) -> bool:
        self.open_for -= 1
        return self.open_for >= 0

    def tag(self, tags: Any) -> None:
        self.tags.update(tags)

    def complete(self, run: Any, metrics: Any, tags: Any) -> None:
        self.tags.update(tags)
        self.replayed = run
        self.ended = ("FINISHED", "")

    def end(self, status: str, error: str, tags: Any = None) -> None:
        self.ended = (status, error)


def policy(**changes: Any) -> JobPolicy:
    return JobPolicy(**{"poll_interval_s": 0.01, "max_retries": 2, "timeout_s": 60.0, **changes})


def handle(
    fake: FakeRunPod,
    tmp_path: Path,
    fleet: Fleet | None = None,
    num: int = 0,
    run_id: str | None = None,
    **changes: Any,
) -> RunPodJobHandle:
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp_path), "subdir": str(num)}, "job": {"name": "t"}}, "x": 1}
    )
    spec = JobSpec(num, ["x=1"], config)
    return RunPodJobHandle(
        fake.client(),
        spec,
        {"n": num, "mlflow": {"run_id": run_id}},
        Record(),
        policy(**changes),
        fleet or Fleet("ep", 2),
    )


def finish(job: RunPodJobHandle, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not job.done():
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.002)


class Endpoint:
    """A scripted endpoint: job ids job-1, job-2, ... each answering its own list of statuses (the last
    repeats; ``(code,)`` answers that HTTP error; a script starting with HANG loses its ``/run`` answer);
    ``cancel`` makes a job answer CANCELLED after one more in-progress status."""

    def __init__(self, *scripts: list[Any], health: list[dict[str, int]] | None = None) -> None:
        self.scripts = list(scripts)
        self.jobs: dict[str, list[Any]] = {}
        self.health = health or [{}]

    def __call__(self, method: str, path: str, body: Any) -> Answer:
        parts = path.strip("/").split("/")
        if parts[-1] == "run":
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = self.scripts.pop(0) if self.scripts else [{"status": "IN_QUEUE"}]
            if self.jobs[job_id] and self.jobs[job_id][0] is HANG:
                self.jobs[job_id].pop(0)
                return HANG
            return ok({"id": job_id, "status": "IN_QUEUE"})
        if parts[-2] == "status":
            states = self.jobs[parts[-1]]
            answer = states.pop(0) if len(states) > 1 else states[0]
            return (answer[0], {}, {}) if isinstance(answer, tuple) else ok({"id": parts[-1], **answer})
        if parts[-2] == "cancel":
            self.jobs[parts[-1]] = [{"status": "IN_PROGRESS"}, {"status": "CANCELLED", "executionTime": 5}]
            return ok({"status": "CANCELLED"})
        if parts[-1] == "health":
            counts = self.health.pop(0) if len(self.health) > 1 else self.health[0]
            return ok({"jobs": counts, "workers": {}})
        if parts[-1] == "purge-queue":
            return ok({"removed": 1})
        return 404, {"error": "no route"}, {}


def runs(fake: FakeRunPod) -> list[dict[str, Any]]:
    return [body for method, path, body in fake.seen if path.endswith("/run")]


def test_running_shows_progress_and_an_unknown_state_warns_once_and_keeps_polling(
    fake: FakeRunPod, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    progress = {"epoch": 1, "epochs": 3, "val_accuracy": 0.5}
    states = [{"status": s} for s in ("IN_QUEUE", "PAUSED", "PAUSED", "RUNNING")]
    fake.route = Endpoint(
        [*states, {"status": "RUNNING", "output": progress}, {"status": "COMPLETED", "output": DONE}]
    )
    job = handle(fake, tmp_path)
    caplog.set_level(logging.INFO, "launchers.runpod.job")
    while job.progress is None:
        assert not job.done()
        time.sleep(0.002)
    assert job.progress == progress
    finish(job)
    assert job.result().return_value == 0.9
    assert [r.message for r in caplog.records].count(
        "#0: RunPod job job-1 is in unknown state 'PAUSED'; still polling"
    ) == 1


def test_a_job_that_may_still_live_is_cancelled_and_seen_final_before_the_trial_is_resubmitted(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    endpoint = Endpoint([{"status": "IN_PROGRESS"}, (500,)], [{"status": "COMPLETED", "output": DONE}])
    fake.route = endpoint
    # the API failing for as long as a trial may run (1 s here) gives the job up
    job = handle(fake, tmp_path, timeout_s=1.0)
    finish(job)
    assert job.result().return_value == 0.9 and job.retries == 1
    paths = fake.paths()
    second_run = [i for i, p in enumerate(paths) if p.endswith("/run")][1]
    cancel = paths.index("/v2/ep/cancel/job-1")
    confirmed = max(i for i, p in enumerate(paths) if p == "/v2/ep/status/job-1")
    assert cancel < confirmed < second_run
    # the execution timeout is the same on every submission: twice the trial's, for a held job's wait
    assert [body["policy"]["executionTimeout"] for body in runs(fake)] == [2_000, 2_000]


def test_an_api_outage_shorter_than_a_trial_delays_the_job_without_resubmitting_it(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    outage = [(503,), (500,), (429,), (503,), (500,), (503,), (503,), (500,)]
    fake.route = Endpoint([{"status": "IN_PROGRESS"}, *outage, {"status": "COMPLETED", "output": DONE}])
    job = handle(fake, tmp_path)
    finish(job, timeout_s=60.0)
    assert job.result().return_value == 0.9 and job.retries == 0
    assert len(runs(fake)) == 1 and not [p for p in fake.paths() if "/cancel/" in p]


def test_a_timed_out_trial_fails_unless_timeouts_are_retried(fake: FakeRunPod, tmp_path: Path) -> None:
    fake.route = Endpoint([{"status": "TIMED_OUT", "executionTime": 120_000}])
    job = handle(fake, tmp_path)
    finish(job)
    with pytest.raises(TrialError, match="retry_timeouts=true"):
        job.result()
    assert len(runs(fake)) == 1

    fake.route = Endpoint([{"status": "TIMED_OUT"}], [{"status": "COMPLETED", "output": DONE}])
    fake.seen.clear()
    job = handle(fake, tmp_path, num=1, retry_timeouts=True)
    finish(job)
    assert job.result().return_value == 0.9 and job.retries == 1 and len(runs(fake)) == 2


def test_a_worker_without_its_gpus_is_the_infrastructures_failure(fake: FakeRunPod, tmp_path: Path) -> None:
    error = json.dumps({"hpo_error": "devices", "message": "worker sees 0 of 1 GPUs", "worker_id": "w1"})
    fake.route = Endpoint(
        [{"status": "FAILED", "error": error, "workerId": "w1"}], [{"status": "COMPLETED", "output": DONE}]
    )
    job = handle(fake, tmp_path)
    finish(job)
    assert job.result().return_value == 0.9 and job.retries == 1
    assert "worker sees 0 of 1 GPUs" in job.record.tags["hpo.last_retry_reason"]  # type: ignore[attr-defined]


def test_a_job_cancelled_before_it_started_is_resubmitted_without_a_retry(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    fake.route = Endpoint([{"status": "CANCELLED"}], [{"status": "COMPLETED", "output": DONE}])
    job = handle(fake, tmp_path)
    finish(job)
    assert job.result().return_value == 0.9 and job.retries == 0 and len(runs(fake)) == 2


def test_a_lost_run_that_created_nothing_is_resubmitted_once(fake: FakeRunPod, tmp_path: Path) -> None:
    fake.route = Endpoint(
        [HANG], [{"status": "COMPLETED", "output": DONE}], health=[{"inQueue": 0, "inProgress": 0}]
    )
    job = handle(fake, tmp_path)
    finish(job)
    assert job.result().return_value == 0.9 and job.retries == 0
    assert len(runs(fake)) == 2 and "/v2/ep/purge-queue" not in fake.paths()


def test_a_lost_run_that_created_a_job_purges_the_queue_first(
    fake: FakeRunPod, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counts = [{"inQueue": 1, "inProgress": 0}, {"inQueue": 0, "inProgress": 1}]
    fake.route = Endpoint([HANG], [{"status": "COMPLETED", "output": DONE}], health=counts)
    job = handle(fake, tmp_path, num=7)
    finish(job)
    assert job.result().return_value == 0.9
    paths = fake.paths()
    assert paths.index("/v2/ep/purge-queue") < [i for i, p in enumerate(paths) if p.endswith("/run")][1]
    assert len(runs(fake)) == 2
    assert any("#7: a job from its lost /run answer may be running" in r.message for r in caplog.records)


def test_a_job_waiting_with_no_worker_starting_stops_the_sweep(fake: FakeRunPod, tmp_path: Path) -> None:
    meter = CostMeter(RestClient("key", fake.rest_base), "ep", PriceList(1.0, [], [], 1), 5, 1)
    meter.observe([{"id": "w1", "status": "THROTTLED", "startedAt": None}] * 2, {"throttled": 2, "total": 2})
    fake.route = Endpoint([{"status": "IN_QUEUE"}])
    job = handle(fake, tmp_path, Fleet("ep", 2, meter), queue_timeout_s=0.05)
    finish(job)
    with pytest.raises(EndpointError, match=r"trial #0: job job-1 waited \d+s .*\(2 throttled\)"):
        job.result()
    assert "/v2/ep/cancel/job-1" in fake.paths()


def test_jobs_beyond_the_sweeps_workers_never_start_a_worker(fake: FakeRunPod, tmp_path: Path) -> None:
    fake.route = Endpoint()
    fleet = Fleet("ep", 2)
    jobs = [handle(fake, tmp_path, fleet, num=n) for n in range(3)]
    for job in jobs:
        job.done()
    assert [body["policy"]["lowPriority"] for body in runs(fake)] == [False, False, True]


def test_a_pruned_job_is_stopped_and_its_run_ends_pruned_with_the_curves_its_progress_carried(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    curves = {"val_accuracy": [[0, 1000, 0.5], [1, 2000, 0.6]]}
    progress = {"epoch": 2, "epochs": 5, "objective": 0.6, "curves": curves}
    fake.route = Endpoint([{"status": "IN_PROGRESS", "output": progress}])
    job = handle(fake, tmp_path)
    while job.progress is None:
        assert not job.done()
        time.sleep(0.002)
    job.prune()
    finish(job)
    assert [path for _, path, _ in fake.seen if "/cancel/" in path] == ["/v2/ep/cancel/job-1"], "stopped once"
    with pytest.raises(TrialError, match="pruned after epoch 2"):
        _ = job.result().return_value
    record = job.record
    assert isinstance(record, Record) and record.ended == ("FINISHED", "")
    assert record.replayed["metrics"] == curves, "the run gets the curves the worker's progress carried"
    assert (record.tags["hpo.pruned"], record.tags["hpo.pruned_epoch"]) == ("true", 2)
    assert job.optuna_state == record.tags["hpo.optuna_state"] == "PRUNED"


def test_a_pruned_job_whose_worker_logs_its_run_is_ended_pruned_after_the_worker_ends_it(
    fake: FakeRunPod, tmp_path: Path
) -> None:
    progress = {"epoch": 1, "epochs": 5, "objective": 0.6}
    fake.route = Endpoint([{"status": "IN_PROGRESS", "output": progress}])
    job = handle(fake, tmp_path, run_id="run-1")
    record = job.record
    assert isinstance(record, Record)
    record.open_for = 3
    while job.progress is None:
        assert not job.done()
        time.sleep(0.002)
    job.prune()
    while record.open_for > 0:
        assert not job.done() and record.ended is None, "not ended while the worker still has the run"
        time.sleep(0.002)
    finish(job)
    assert record.ended == ("FINISHED", "") and record.tags["hpo.pruned"] == "true"
    assert record.replayed is None, "the worker logged the curves itself"
