"""The local backend's slot processes: reused from job to job, yet each job sees its own submission's
environment, and a cancelled or timed-out job is stopped without holding up the next."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobStatus
from hydra.types import TaskFunction
from omegaconf import DictConfig

from launchers import preloading
from launchers.dispatch import InFlight, Job
from launchers.launcher import HPOLauncher
from tests.launchers import hpo_launcher

pytestmark = pytest.mark.slow

MakeLauncher = Callable[[TaskFunction, int], HPOLauncher]


@pytest.fixture
def make_launcher(tmp_path: Path, hydra_restore_singletons: Any) -> MakeLauncher:
    def make(task: TaskFunction, workers: int) -> HPOLauncher:
        return hpo_launcher.make_launcher(task, tmp_path, workers)

    return make


def wait_done(flight: InFlight, job: Job, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not job.done():
        assert time.monotonic() < deadline, f"job #{job.num} did not stop"
        time.sleep(0.05)


def test_a_slot_process_runs_job_after_job_in_the_environment_of_each_submission(
    make_launcher: MakeLauncher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def task(cfg: DictConfig) -> tuple[int, str | None]:
        return os.getpid(), os.environ.get("BENCH_MARK")

    launcher = make_launcher(task, 1)
    monkeypatch.setenv("BENCH_MARK", "first")
    (first,) = launcher.launch([["+x=1"]], initial_job_idx=0)
    monkeypatch.setenv("BENCH_MARK", "second")
    (second,) = launcher.launch([["+x=2"]], initial_job_idx=1)
    assert first.return_value[0] == second.return_value[0] != os.getpid(), "one process ran both jobs"
    assert (first.return_value[1], second.return_value[1]) == ("first", "second")


def test_slots_are_forked_with_the_preloaded_modules_loaded(
    tmp_path: Path, hydra_restore_singletons: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preloaded module is imported once, by the zygote, and every slot forked from it has it loaded;
    what the zygote imported is frozen out of the garbage collector before the first fork."""
    probe, imports, frozen = (
        tmp_path / "lib" / "hpo_preload_probe.py",
        tmp_path / "imports",
        tmp_path / "frozen",
    )
    probe.parent.mkdir()
    probe.write_text(
        "import gc, os\n"
        f"open({str(imports)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        f"record = lambda: open({str(frozen)!r}, 'a').write(f'{{gc.get_freeze_count()}}\\n')\n"
        "os.register_at_fork(before=record)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(probe.parent))

    def task(cfg: DictConfig) -> tuple[bool, int]:
        return "hpo_preload_probe" in sys.modules, os.getppid()

    launcher = hpo_launcher.make_launcher(task, tmp_path / "sweep", workers=2, preload=["hpo_preload_probe"])
    returns = launcher.launch([["+x=1"], ["+x=2"]], initial_job_idx=0)
    zygote = preloading._zygote
    assert zygote is not None and zygote.modules == ("hpo_preload_probe",)
    assert [r.return_value for r in returns] == [(True, zygote.process.pid)] * 2, "forked by the zygote"
    assert imports.read_text().split() == [str(zygote.process.pid)], "imported once, by the zygote alone"
    counts = [int(count) for count in frozen.read_text().split()]
    assert len(counts) == 2 and min(counts) > 0, "frozen before each fork"
    assert (tmp_path / "sweep" / ".jobs" / "preload.log").is_file()


def test_a_cancelled_job_stops_and_its_slot_takes_the_next_job(
    make_launcher: MakeLauncher, tmp_path: Path
) -> None:
    def task(cfg: DictConfig) -> int:
        if cfg.x == 1:
            (tmp_path / "started").write_text(str(os.getpid()))
            try:
                time.sleep(120)
            except KeyboardInterrupt:
                (tmp_path / "interrupted").touch()
                raise
        return int(cfg.x)

    launcher = make_launcher(task, 1)
    flight = launcher.open()
    job = launcher.start(launcher.prepare(["+x=1"], 0))
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job.handle.cancel()
    wait_done(flight, job)
    ret = launcher.collect(job)
    assert ret.status == JobStatus.FAILED
    with pytest.raises(Exception, match=r"job #0 stopped without a result \(cancelled\)"):
        _ = ret.return_value
    assert (tmp_path / "interrupted").exists(), "the job got a KeyboardInterrupt to record how it ended"
    (after,) = launcher.launch([["+x=2"]], initial_job_idx=1)
    assert after.return_value == 2


def test_a_job_past_its_time_limit_is_stopped_and_failed(make_launcher: MakeLauncher) -> None:
    def task(cfg: DictConfig) -> int:
        time.sleep(120)
        return 0

    launcher = make_launcher(task, 1)
    flight = launcher.open()
    flight.backend._timeout_s = 1.0  # type: ignore[attr-defined]  (the config's minimum is a minute)
    job = launcher.start(launcher.prepare(["+x=1"], 0))
    wait_done(flight, job)
    with pytest.raises(Exception, match=r"job #0 stopped without a result \(timed out after"):
        _ = launcher.collect(job).return_value


def test_a_job_reports_the_trial_run_it_closed_and_the_state_it_tagged(make_launcher: MakeLauncher) -> None:
    def task(cfg: DictConfig) -> int:
        from hpo.core.closed_runs import note_closed_run

        note_closed_run(f"run-{cfg.x}", "COMPLETE" if cfg.x == 1 else None)
        return int(cfg.x)

    launcher = make_launcher(task, 1)
    flight = launcher.open()
    first = launcher.start(launcher.prepare(["+x=1"], 0))
    wait_done(flight, first)
    assert (first.handle.run_id, first.handle.optuna_state) == ("run-1", "COMPLETE")
    launcher.collect(first)
    second = launcher.start(launcher.prepare(["+x=2"], 1))
    wait_done(flight, second)
    assert (second.handle.run_id, second.handle.optuna_state) == ("run-2", None), "each job its own runs"


def test_a_pruned_job_stops_at_its_trials_next_step_and_its_slot_takes_the_next_job(
    make_launcher: MakeLauncher,
) -> None:
    """The task stands for a trial: it reports an epoch at a time through the trial channel and leaves when
    its stop is set; the driver sees the progress and prunes it, and the same process runs the next job."""

    def task(cfg: DictConfig) -> tuple[str, int, int]:
        import threading

        from hpo.core import trial_channel

        stop = threading.Event()
        with trial_channel.trial(stop.set):
            for epoch in range(1, 601):
                trial_channel.report({"epoch": epoch, "epochs": 600, "objective": epoch / 600, "metrics": {}})
                if stop.wait(0.1):
                    return "pruned", epoch, os.getpid()
        return "ran every epoch", epoch, os.getpid()

    launcher = make_launcher(task, 1)
    flight = launcher.open()
    job = launcher.start(launcher.prepare(["+x=1"], 0))
    deadline = time.monotonic() + 30
    while not (job.handle.progress and job.handle.progress["epoch"] >= 2):
        assert not job.done() and time.monotonic() < deadline, "the job reports each epoch while it runs"
        time.sleep(0.05)
    assert job.handle.progress["epochs"] == 600
    job.handle.prune()
    wait_done(flight, job)
    outcome, epoch, pid = launcher.collect(job).return_value
    assert outcome == "pruned" and epoch < 600
    assert job.handle.progress["epoch"] == epoch, "every epoch reported before the return is read"
    after = launcher.start(launcher.prepare(["+x=2"], 1))
    after.handle.prune()  # before the slot has read the job: it prunes as the job starts
    wait_done(flight, after)
    assert launcher.collect(after).return_value == ("pruned", 1, pid), "the slot's process stayed"
