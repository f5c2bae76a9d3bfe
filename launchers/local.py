"""The local backend: each job is a real subprocess started by submitit's local executor."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn

from hpo.errors import BackendError
from launchers.job import JobRunner, JobSpec


class LocalJobHandle:
    """A submitit local job running one hpo job."""

    def __init__(self, job: Any, spec: JobSpec) -> None:
        self._job = job
        self._spec = spec

    def done(self) -> bool:
        return bool(self._job.done())

    def result(self) -> JobReturn:
        import submitit

        try:
            ret = self._job.result()
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(
                f"job #{self._spec.num} stopped without a result ({first_line}); "
                f"its log is {self._job.paths.stderr}"
            ) from None
        assert isinstance(ret, JobReturn)
        return ret

    def cancel(self) -> None:
        self._job.cancel(check=False)


def gpu_pool() -> list[int]:
    """The GPUs on offer: ``CUDA_VISIBLE_DEVICES`` when set (as Slurm sets it), else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        try:
            return [int(d) for d in visible.split(",") if d.strip()]
        except ValueError:
            raise BackendError(
                f"CUDA_VISIBLE_DEVICES={visible!r}: the local backend needs GPU indices (e.g. 0,1), not UUIDs"
            ) from None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


class LocalBackend:
    """Runs jobs as subprocesses on this machine through ``submitit.LocalExecutor``.

    Each worker slot owns its own GPUs (slot i gets the i-th group of ``gpus_per_worker``), so
    concurrent trials never share a card; with ``gpus_per_worker=0`` jobs see no GPU at all.
    """

    def __init__(
        self, runner: JobRunner, folder: str | Path, timeout_min: int, workers: int, gpus_per_worker: int
    ) -> None:
        import submitit

        pool = gpu_pool() if gpus_per_worker else []
        if gpus_per_worker * workers > len(pool):
            raise BackendError(
                f"{workers} workers x {gpus_per_worker} GPU(s) each need {gpus_per_worker * workers} GPUs, "
                f"but this machine offers {len(pool)}: lower launcher.workers or choose a hardware profile "
                "with fewer GPUs per worker (hardware=cpu trains on the CPU)"
            )
        self._slot_gpus = [pool[i * gpus_per_worker : (i + 1) * gpus_per_worker] for i in range(workers)]
        self._runner = runner
        self._executor = submitit.LocalExecutor(folder=str(folder))
        # The job function never checkpoints, so a timeout must not resubmit it.
        self._executor.update_parameters(timeout_min=timeout_min)
        self._executor.max_num_timeout = 0

    def submit(self, spec: JobSpec, slot: int) -> LocalJobHandle:
        gpus = self._slot_gpus[slot]
        self._executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
        return LocalJobHandle(self._executor.submit(self._runner, spec), spec)
