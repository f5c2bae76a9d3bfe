"""The local backend: each job is a real subprocess started by submitit's local executor."""

from __future__ import annotations

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


class LocalBackend:
    """Runs jobs as subprocesses on this machine through ``submitit.LocalExecutor``."""

    def __init__(self, runner: JobRunner, folder: str | Path, timeout_min: int) -> None:
        import submitit

        self._runner = runner
        self._executor = submitit.LocalExecutor(folder=str(folder))
        # The job function never checkpoints, so a timeout must not resubmit it.
        self._executor.update_parameters(timeout_min=timeout_min)
        self._executor.max_num_timeout = 0

    def submit(self, spec: JobSpec) -> LocalJobHandle:
        return LocalJobHandle(self._executor.submit(self._runner, spec), spec)
