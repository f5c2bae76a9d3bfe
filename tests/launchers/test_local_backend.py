"""The hpo launcher's own promises on the local backend: a cap on running jobs, failures kept apart,
and no job left running after an interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import TaskFunction
from omegaconf import DictConfig

from hpo.core.errors import BackendError
from tests.launchers.hpo_launcher import make_launcher

pytestmark = pytest.mark.slow

Launch = Callable[..., Sequence[JobReturn]]


@pytest.fixture
def launch(tmp_path: Path, hydra_restore_singletons: Any) -> Callable[..., Sequence[JobReturn]]:
    """Launch jobs on the hpo launcher the way a sweeper does, returning every job's ``JobReturn``."""

    def run(
        task: TaskFunction, jobs: list[list[str]], workers: int, gpus_per_worker: int = 0
    ) -> Sequence[JobReturn]:
        launcher = make_launcher(task, tmp_path / "sweep", workers, gpus_per_worker)
        return launcher.launch(jobs, initial_job_idx=0)

    return run


def test_never_more_than_workers_jobs_at_once(launch: Launch, tmp_path: Path) -> None:
    record = tmp_path / "intervals"
    record.mkdir()

    def task(cfg: DictConfig) -> int:
        started = time.time()
        time.sleep(1.0)  # holds the slot so that overlapping jobs are observable
        (record / f"{cfg.x}.json").write_text(json.dumps([started, time.time(), os.getpid()]))
        return int(cfg.x)

    returns = launch(task, [[f"+x={x}"] for x in range(1, 6)], workers=2)
    assert [r.return_value for r in returns] == [1, 2, 3, 4, 5], "returns come back in job order"
    intervals = [json.loads(p.read_text()) for p in record.iterdir()]
    assert len({pid for _, _, pid in intervals}) == 2, "jobs ran in one long-lived process per worker slot"
    assert os.getpid() not in {pid for _, _, pid in intervals}
    events = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals])
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    # at most the workers; that both slots overlap depends on how fast each process starts on a busy machine
    assert peak <= 2


def test_a_failing_job_is_reported_and_the_others_complete(launch: Launch, tmp_path: Path) -> None:
    def task(cfg: DictConfig) -> int:
        if cfg.x == 2:
            raise ValueError("job two is broken")
        return int(cfg.x)

    returns = launch(task, [["+x=1"], ["+x=2"], ["+x=3"]], workers=2)
    assert [r.status for r in returns] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    with pytest.raises(ValueError, match="job two is broken"):
        _ = returns[1].return_value
    assert returns[2].return_value == 3


def test_a_job_whose_process_dies_becomes_a_failed_return(launch: Launch, tmp_path: Path) -> None:
    def task(cfg: DictConfig) -> int:
        if cfg.x == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return int(cfg.x)

    returns = launch(task, [["+x=1"], ["+x=2"]], workers=2)
    assert [r.status for r in returns] == [JobStatus.FAILED, JobStatus.COMPLETED]
    with pytest.raises(
        Exception, match=r"job #0 stopped without a result \(its process was killed by SIGKILL\)"
    ):
        _ = returns[0].return_value


def test_each_worker_slot_gets_its_own_gpus(
    launch: Launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")

    def task(cfg: DictConfig) -> tuple[str, float, float]:
        started = time.time()
        time.sleep(1.0)  # holds the slot so that concurrent jobs overlap
        return os.environ["CUDA_VISIBLE_DEVICES"], started, time.time()

    returns = [
        r.return_value for r in launch(task, [[f"+x={x}"] for x in range(4)], workers=2, gpus_per_worker=2)
    ]
    assert {gpus for gpus, _, _ in returns} == {"0,1", "2,3"}
    for a, b in zip(returns, returns[1:], strict=False):
        if a[1] < b[2] and b[1] < a[2]:
            assert a[0] != b[0], "jobs running at the same time never share a GPU"


def test_cpu_jobs_see_no_gpu(launch: Launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    (ret,) = launch(lambda cfg: os.environ["CUDA_VISIBLE_DEVICES"], [["+x=1"]], workers=1)
    assert ret.return_value == ""


def test_more_gpus_than_the_machine_has_is_refused(
    launch: Launch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(
        BackendError, match="2 workers x 1 GPU.s. each need 2 GPUs, but this machine offers 1"
    ):
        launch(lambda cfg: 0, [["+x=1"]], workers=2, gpus_per_worker=1)


def test_ctrl_c_cancels_every_running_job(tmp_path: Path) -> None:
    """SIGINT to the driver stops the sweep and leaves no job process behind."""
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent("""
        import os, time
        import hydra

        @hydra.main(version_base=None, config_path=None)
        def main(cfg):
            open(f"started_{cfg.x}_{os.getpid()}", "w").close()
            time.sleep(120)

        main()
    """)
    )
    driver = subprocess.Popen(
        [
            sys.executable,
            str(app),
            "-m",
            "hydra/launcher=hpo",
            "hydra.launcher.workers=2",
            "+x=1,2,3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a runner started in the background hands SIGINT down ignored, and the app would keep ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started_*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = [int(p.name.rsplit("_", 1)[1]) for p in tmp_path.glob("started_*")]
    assert len(pids) == 2, "two jobs run at once before the interruption"
    driver.send_signal(signal.SIGINT)
    output, _ = driver.communicate(timeout=60)
    assert driver.returncode != 0
    assert "#0 cancelled" in output and "#1 cancelled" in output
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids), "no job process outlives the driver"
    assert len(list(tmp_path.glob("started_*"))) == 2, "no job starts after the interruption"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
