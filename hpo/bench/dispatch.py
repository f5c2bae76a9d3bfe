"""How well sweeps keep their workers busy: hpo's asynchronous sweeper against Optuna's batch sweeper.

Each (backend, mode) case is a real ``-m`` sweep of hpo's ``conf/`` tree in its own driver process
(``hpo.bench.workload_driver``): ``hydra/sweeper=hpo`` (async) or ``hydra/sweeper=optuna`` (batch), on
the local backend, on the runpod backend against a local RunPod emulator, or on the slurm backend (one
SLURM job per trial, on the cluster ``sbatch`` reaches), every trial running the calibrated waiting
workload of ``hpo.bench.workload``. The figures:

- ``wall_s``: the wall time of the sweep's trials, from the first task's start to the last one's end;
  ``efficiency``: time spent in tasks (as they recorded it) / (workers x ``wall_s``), the share of worker
  time the sweeper kept busy; ``ceiling``: the efficiency of a sweeper that costs nothing, starting the
  same tasks in trial order on the first free worker (what is left is the wait for the last tasks, which
  no sweeper that does not know the task times avoids);
- ``sweep_s``: the whole sweep in the driver, from Hydra's ``on_multirun_start`` to ``on_multirun_end``,
  which adds the one-off ``setup_s`` (starting workers, opening the study and the MLflow parent run) and
  ``closing_s`` (final reports, model registration); ``sweep_efficiency`` divides by it instead (the MLflow
  store is created beforehand, as it exists for every sweep but a project's first);
- ``overhead_ms``: the driver's CPU time (every thread: ask, compose, submit, poll, tell, MLflow records)
  between the first task's start and the last task's end, per trial; the driver has nothing else to do
  then, so this is what dispatching costs it, without the one-off setup (``driver_cpu_s`` has the total);
- ``driver_rss_mb``: the driver process's peak resident set size;
- ``handoff_ms``: how long a worker waits, on average, between the end of one task and the start of its
  next (tasks of one worker process, as the events record them): what dispatching costs the workers,
  apart from the wait for the last task at the end of the sweep, which no sweeper can avoid. Where every
  task has a process of its own (slurm: a job per trial), a worker is one of ``workers`` slots, each task
  taking the slot freed first: the wait then includes the scheduler's hand-off and the job's start.

Every process runs with Python's bytecode cache on (in a directory of its own when the environment turns
it off, as ``PYTHONDONTWRITEBYTECODE`` does), warmed before the first sweep, as in a usual install:
compiling mlflow and optuna from source at each start would be timed as setup otherwise.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.bench.workload import EVENTS_ENV, MEDIAN_ENV
from hpo.core.errors import BackendError

SWEEPERS = {"async": "hpo", "batch": "optuna"}
BENCH_API_KEY = "hpo-bench-dispatch-key"
# the emulated endpoint's idle timeout: RunPod's default, which hpo's deploy keeps
IDLE_TIMEOUT_S = 5
SEARCH_SPACE = "tag(log, interval(0.0001, 0.1))"
PYCACHE = Path(tempfile.gettempdir()) / "hpo-bench-pycache"
# what the driver, the slot processes and the emulator's workers import, compiled once before timing
WARM_IMPORTS = (
    "hpo.bench.workload_driver, hpo.bench.workload, hpo.driver.sweeper, hpo.driver.sweep_run, "
    "hpo.core.payload, launchers.launcher, "
    "launchers.local, launchers.local_slot, launchers.dispatch, hydra_plugins.hydra_optuna_sweeper._impl, "
    "optuna.storages, sqlalchemy, alembic, mlflow, mlflow.tracking, "
    "runpod, launchers.runpod.backend, launchers.runpod.emulator.server, aiohttp, "
    "submitit, launchers.slurm.backend, launchers.slurm.trial_job"
)


@dataclass
class Case:
    """One benchmark sweep: where its trials run, which sweeper asks them, and how many."""

    backend: str
    mode: str
    workers: int
    trials: int
    seed: int
    median_s: float
    # runpod: the emulated workers' boot time; they scale from 0 and stop after an idle timeout
    cold_start_s: float | None = None


def run(
    backends: list[str],
    modes: list[str],
    workers: int,
    trials: int,
    seed: int,
    median_s: float,
    cold_starts_s: list[float] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run every (backend, mode, cold start) case in turn and yield its figures as soon as it is done."""
    root = Path(tempfile.mkdtemp(prefix="hpo-bench-dispatch-"))
    subprocess.run([sys.executable, "-c", f"import {WARM_IMPORTS}"], env=environment(), check=True)
    for backend in backends:
        boots: list[float | None] = list(cold_starts_s or [0.0]) if backend == "runpod" else [None]
        for mode in modes:
            for boot in boots:
                case = Case(backend, mode, workers, trials, seed, median_s, boot)
                suffix = "" if boot is None else f"-boot{boot:g}"
                yield run_case(case, root / f"{backend}-{mode}{suffix}")
    shutil.rmtree(root, ignore_errors=True)


def run_case(case: Case, directory: Path) -> dict[str, Any]:
    """Run one case's sweep in a fresh driver process and return its figures."""
    directory.mkdir(parents=True)
    events, probe, log_path = directory / "events.jsonl", directory / "driver.json", directory / "driver.log"
    tracking_uri = f"sqlite:///{directory / 'mlflow.db'}"
    _create_store(tracking_uri)
    env = {**environment(), MEDIAN_ENV: str(case.median_s), EVENTS_ENV: str(events)}
    overrides = [
        f"hydra/sweeper={SWEEPERS[case.mode]}",
        f"hydra.sweeper.n_trials={case.trials}",
        f"hydra.sweeper.n_jobs={case.workers}",
        f"launcher.workers={case.workers}",
        f"seed={case.seed}",
        "~search_space@hydra.sweeper.params",
        f"trainer.learning_rate={SEARCH_SPACE}",
        f"mlflow.tracking_uri={tracking_uri}",
        f"hydra.sweep.dir={directory / 'sweep'}",
        "+hydra.callbacks.bench_probe._target_=hpo.bench.workload_driver.SweepProbe",
        f"+hydra.callbacks.bench_probe.out={probe}",
    ]
    timeout_s = 120 + 10 * case.median_s * case.trials / case.workers
    billing: dict[str, Any] = {}
    with _endpoint(case, directory, env, billing) as extra:
        command = [sys.executable, "-m", "hpo.bench.workload_driver", "-m", *overrides, *extra]
        with open(log_path, "w") as log:
            try:
                code = subprocess.run(
                    command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
    if code != 0 or not probe.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        ended = "timed out" if code is None else f"exited with code {code}"
        raise BackendError(f"{case.backend} {case.mode} sweep {ended}; its log is {log_path}:\n{tail}")
    result = figures(case, json.loads(probe.read_text()), _read_events(events))
    if billing:
        result.update(_costs(billing, _reported_cost(tracking_uri), result["completed"]))
    return result


def environment() -> dict[str, str]:
    """This process's environment for the benchmark's processes, with the bytecode cache on."""
    env = {k: v for k, v in os.environ.items() if k != "HPO_PARENT_RUN_ID"}
    if env.get("PYTHONDONTWRITEBYTECODE"):
        env.update(PYTHONDONTWRITEBYTECODE="", PYTHONPYCACHEPREFIX=str(PYCACHE))
    return env


@contextlib.contextmanager
def _endpoint(
    case: Case, directory: Path, env: dict[str, str], billing: dict[str, Any]
) -> Iterator[list[str]]:
    """The overrides (and environment, in ``env``) that send the case's trials to its backend; for runpod,
    a RunPod emulator of up to ``workers`` workers serving the workload, scaling from none, running while
    the sweep does and until its workers' idle timeout has passed, when its bill goes into ``billing``."""
    if case.backend == "local":
        yield []
        return
    if case.backend == "slurm":
        yield ["hardware=slurm_cpu", "launcher.slurm.state_poll_s=1"]
        return
    from launchers.runpod.emulator import EmulatorProcess

    command = [sys.executable, "-m", "hpo.bench.workload_worker"]
    worker_env = {k: env[k] for k in (MEDIAN_ENV, EVENTS_ENV, "PYTHONDONTWRITEBYTECODE") if k in env}
    if "PYTHONPYCACHEPREFIX" in env:
        worker_env["PYTHONPYCACHEPREFIX"] = env["PYTHONPYCACHEPREFIX"]
    emulator = EmulatorProcess(
        workers=case.workers,
        worker_command=command,
        api_key=BENCH_API_KEY,
        endpoint_id="hpo-bench",
        env=worker_env,
        log_dir=directory / "emulator",
        workers_min=0,
        cold_start_s=case.cold_start_s or 0.0,
        idle_timeout_s=IDLE_TIMEOUT_S,
    )
    with emulator:
        env.update(RUNPOD_API_KEY=emulator.api_key, RUNPOD_ENDPOINT_ID=emulator.endpoint_id)
        yield [
            "hardware=runpod_1gpu",
            f"launcher.runpod.api_base={emulator.api_base}",
            f"launcher.runpod.rest_api_base={emulator.rest_api_base}",
        ]
        emulator.wait_idle(timeout_s=IDLE_TIMEOUT_S + 60)
        billing.update(emulator.billing())


def _reported_cost(tracking_uri: str) -> float | None:
    """The cost the driver logged on the sweep's parent run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`mlflow.parentRunId` IS NULL"
    )
    costs = [r.data.metrics["cost_usd"] for r in runs if "cost_usd" in r.data.metrics]
    return costs[0] if costs else None


def _costs(billing: dict[str, Any], reported: float | None, completed: int) -> dict[str, Any]:
    """The emulator's bill (every worker-second, cold starts and idle tail included) per trial, and how
    far the driver's own figure is from it."""
    billed = float(billing["usd"])
    return {
        "billed_usd": round(billed, 6),
        "worker_s": round(float(billing["worker_seconds"]), 2),
        "cost_per_trial_usd": round(billed / max(completed, 1), 6),
        "reported_usd": None if reported is None else round(reported, 6),
        "reported_error": None if reported is None or billed <= 0 else round(reported / billed - 1, 4),
    }


def _create_store(tracking_uri: str) -> None:
    """Create the MLflow store (tables and migrations) before the sweep, so it is not timed."""
    code = f"from mlflow.tracking import MlflowClient; MlflowClient({tracking_uri!r}).search_experiments()"
    subprocess.run([sys.executable, "-c", code], env=environment(), check=True, capture_output=True)


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cpu_at(samples: list[list[float]], when: float) -> float:
    """The driver's CPU seconds at wall-clock time ``when``, interpolated between two samples."""
    times = [t for t, _ in samples]
    i = min(max(bisect_left(times, when), 1), len(samples) - 1)
    (t0, c0), (t1, c1) = samples[i - 1], samples[i]
    if t1 <= t0:
        return c1
    return c0 + (c1 - c0) * min(max((when - t0) / (t1 - t0), 0.0), 1.0)


def figures(case: Case, probe: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The case's figures from the driver's probe and the tasks' events."""
    sweep_s = probe["end"] - probe["start"]
    task_times = [e["end"] - e["start"] for e in events]
    tasks_s = sum(task_times)
    completed = len({e["number"] for e in events})
    first, last = probe["end"], probe["end"]
    steady_cpu = 0.0
    if events:
        first, last = min(e["start"] for e in events), max(e["end"] for e in events)
        steady_cpu = _cpu_at(probe["samples"], last) - _cpu_at(probe["samples"], first)
    wall_s = last - first
    handoff = _handoff_ms(events)
    return {
        "backend": case.backend,
        "mode": case.mode,
        "cold_start_s": case.cold_start_s,
        "sweeper": SWEEPERS[case.mode],
        "workers": case.workers,
        "trials": case.trials,
        "completed": completed,
        "median_s": case.median_s,
        "wall_s": round(wall_s, 3),
        "efficiency": _share(tasks_s, case.workers * wall_s),
        "ceiling": _ceiling(events, case.workers),
        "tasks_s": round(tasks_s, 3),
        "longest_task_s": round(max(task_times, default=0.0), 3),
        "sweep_s": round(sweep_s, 3),
        "setup_s": round(first - probe["start"], 3),
        "closing_s": round(probe["end"] - last, 3),
        "sweep_efficiency": _share(tasks_s, case.workers * sweep_s),
        "overhead_ms": round(1000 * steady_cpu / max(completed, 1), 2),
        "driver_cpu_s": round(probe["cpu_s"], 3),
        "driver_rss_mb": round(probe["peak_rss_mb"], 1),
        "handoff_ms": _slot_handoff_ms(events, case.workers) if handoff is None else handoff,
        "driver_imported_tensorflow": probe["tensorflow_imported"],
    }


def _ceiling(events: list[dict[str, Any]], workers: int) -> float:
    """The efficiency of free dispatch: each task, in trial order, on the first worker to be free."""
    free_at = [0.0] * workers
    for event in sorted(events, key=lambda e: e["number"]):
        start = heapq.heappop(free_at)
        heapq.heappush(free_at, start + event["end"] - event["start"])
    return _share(sum(e["end"] - e["start"] for e in events), workers * max(free_at, default=0.0))


def _handoff_ms(events: list[dict[str, Any]]) -> float | None:
    """The mean wait between consecutive tasks of one worker process, if any worker ran two."""
    by_worker: dict[Any, list[dict[str, Any]]] = {}
    for event in events:
        by_worker.setdefault(event.get("pid"), []).append(event)
    waits = [
        b["start"] - a["end"]
        for tasks in by_worker.values()
        for a, b in itertools.pairwise(sorted(tasks, key=lambda e: e["start"]))
    ]
    return round(1000 * sum(waits) / len(waits), 1) if waits else None


def _slot_handoff_ms(events: list[dict[str, Any]], workers: int) -> float | None:
    """The mean wait between a slot's task and its next, where each task takes the slot freed first (tasks
    with a process each: the wait includes starting that process)."""
    ordered = sorted(events, key=lambda e: e["start"])
    free_at = sorted(e["end"] for e in ordered[:workers])
    waits = []
    for event in ordered[workers:]:
        waits.append(event["start"] - heapq.heappop(free_at))
        heapq.heappush(free_at, event["end"])
    return round(1000 * sum(waits) / len(waits), 1) if waits else None


def _share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole > 0 else 0.0


def describe(result: dict[str, Any]) -> str:
    """One line of figures for a human."""
    boot = result.get("cold_start_s")
    cost = ""
    if "billed_usd" in result:
        error = result["reported_error"]
        cost = (
            f"; billed ${result['billed_usd']:.4f} for {result['worker_s']:.0f} worker-s, "
            f"${result['cost_per_trial_usd']:.5f} a trial, driver's figure "
            + ("missing" if error is None else f"{100 * error:+.1f}%")
        )
    return (
        f"{result['backend']:<6} {result['mode']:<5} W={result['workers']} T={result['trials']}"
        f"{'' if boot is None else f' cold start {boot:g} s'}: "
        f"trials' wall {result['wall_s']:.1f} s, efficiency {result['efficiency']:.3f} "
        f"(ceiling {result['ceiling']:.3f}), "
        f"driver overhead {result['overhead_ms']:.1f} ms/trial, "
        f"{result['handoff_ms'] or 0:.0f} ms between a worker's tasks, "
        f"driver peak RSS {result['driver_rss_mb']:.0f} MB "
        f"({result['completed']} trials done, {result['tasks_s']:.1f} s in tasks; whole sweep "
        f"{result['sweep_s']:.1f} s = setup {result['setup_s']:.1f} s + trials + closing "
        f"{result['closing_s']:.1f} s, efficiency {result['sweep_efficiency']:.3f}){cost}"
    )


def speedups(results: list[dict[str, Any]]) -> list[str]:
    """Per backend with both modes measured: how much faster async ran the trials, and the whole sweep,
    than batch."""
    lines = []
    for backend, boot in sorted({(r["backend"], r.get("cold_start_s")) for r in results}, key=str):
        runs = {r["mode"]: r for r in results if (r["backend"], r.get("cold_start_s")) == (backend, boot)}
        if {"async", "batch"} <= runs.keys() and runs["async"]["wall_s"] > 0:
            fast, slow = runs["async"], runs["batch"]
            label = backend if boot is None else f"{backend} (cold start {boot:g} s)"
            lines.append(
                f"{label}: async {slow['wall_s'] / fast['wall_s']:.2f}x faster than batch "
                f"(whole sweep {slow['sweep_s'] / fast['sweep_s']:.2f}x)"
            )
    return lines
