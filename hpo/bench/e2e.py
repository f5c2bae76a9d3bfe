"""What a user waits for: hpo's whole sweep command against KerasTuner on the same problem, back to back.

Each seed runs, one after the other and each in its own processes:

- hpo: ``python -m hpo -m`` as the README runs it (digits, the cnn family and its search space, ``trials``
  trials of ``epochs`` epochs, ``workers`` slots, a fresh MLflow store in a temporary directory), timed from
  the command's start to its exit;
- KerasTuner: ``BayesianOptimization`` in one process (``hpo.bench.kerastuner_search``) on hpo's own model
  builder, search space, data split, input pipeline and epochs, timed the same way.

Both walls, both best ``val_accuracy`` and hpo's breakdown, from the sweep's ``events.jsonl`` and its MLflow
runs: ``to_study_s`` (command start to the study open), ``to_first_submit_s``, ``to_first_trial_s`` (to the
first trial's MLflow run opening, its libraries loaded) and ``to_first_epoch_s`` (to that trial's first
epoch logged), ``trials_s`` (first submit to the last trial's result) and ``after_last_s`` (the last result
to the command's exit); ``cpu_s``, each side's CPU seconds with its child processes, which a busy machine
inflates less than its wall time. ``reports_complete`` says whether the parent run was FINISHED with every
final report in MLflow when the command returned. A pruned sweep run after the unpruned one of its shape and
seed says when it came within ``REACHED`` of that one's best (``to_unpruned_best``).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.bench.dispatch import environment
from hpo.core.errors import BackendError

# what the sweep's processes and KerasTuner's import, compiled once before timing (as in a usual install)
WARM_IMPORTS = (
    "hpo.driver.cli, hpo.driver.sweeper, hpo.driver.trial_loop, hpo.reports.cli, hpo.reports.plots, "
    "launchers.local, launchers.local_slot, launchers.slot_zygote, worker.libraries, worker.trial, "
    "worker.trainer, worker.models, worker.datasets, worker.reports, worker.run_logging, mlflow, "
    "mlflow.keras, optuna.visualization, optuna.visualization.matplotlib, optuna.importance, plotly, "
    "matplotlib.pyplot, keras_tuner, hpo.bench.kerastuner_search"
)
# the final reports a finished sweep's parent run holds under reports/ (plots: when a trial completed)
FINAL_REPORTS = ("trials.csv", "report.html", "optimization_history.png")
# how close to the unpruned sweep's best a pruned one must come to have reached it
REACHED = 0.005
TIMEOUT_S = 1800


@dataclass
class Case:
    """One comparison: the sweep's shape and seed, and the pruner hpo uses (None: the sweep's default), an
    option with its settings if any: ``successive_halving,min_resource=2``."""

    trials: int
    epochs: int
    workers: int
    seed: int
    pruner: str | None = None


def run(cases: list[Case], *, kerastuner: bool = True) -> Iterator[dict[str, Any]]:
    """Run each case (hpo, then KerasTuner once per shape and seed, unless ``kerastuner`` is false: cases that
    differ only in their pruner share it) and yield its figures as soon as they are in."""
    root = Path(tempfile.mkdtemp(prefix="hpo-bench-e2e-"))
    subprocess.run([sys.executable, "-c", f"import {WARM_IMPORTS}"], env=environment(), check=True)
    tuned: dict[tuple[int, int, int], dict[str, Any]] = {}
    unpruned: dict[tuple[int, int, int], dict[str, Any]] = {}
    try:
        for i, case in enumerate(cases):
            hpo = run_hpo(case, root / f"hpo-{i}")
            key = (case.trials, case.epochs, case.seed)
            if kerastuner and key not in tuned:
                tuned[key] = run_kerastuner(case, root / f"kerastuner-{i}")
            tuner = tuned.get(key)
            ratio = None if tuner is None else _ratio(hpo, tuner)
            result = {**_shape(case), "hpo": hpo, "kerastuner": tuner, "wall_ratio": ratio}
            if case.pruner in (None, "none"):
                unpruned[key] = hpo
            elif key in unpruned:
                result["to_unpruned_best"] = to_reference_best(hpo, unpruned[key])
            yield result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_hpo(case: Case, directory: Path) -> dict[str, Any]:
    """hpo's sweep command in ``directory``, timed from its start to its exit, with its breakdown."""
    directory.mkdir(parents=True)
    sweep_dir = directory / "sweep"
    command = hpo_command(case, sweep_dir)
    started, code, cpu_s = _timed(command, directory, directory / "hpo.log")
    ended = time.time()
    if code != 0:
        _fail("hpo's sweep", code, directory / "hpo.log")
    figures = breakdown(
        started, ended, read_events(sweep_dir), *first_trial(f"sqlite:///{directory}/mlflow.db")
    )
    figures["cpu_s"] = cpu_s
    figures["reports_complete"] = reports_complete(f"sqlite:///{directory}/mlflow.db")
    return figures


def hpo_command(case: Case, sweep_dir: Path) -> list[str]:
    """The README's sweep command in the case's shape, seed and pruner."""
    command = [
        sys.executable,
        "-m",
        "hpo",
        "-m",
        f"hydra.sweeper.n_trials={case.trials}",
        f"launcher.workers={case.workers}",
        f"trainer.max_epochs={case.epochs}",
        f"seed={case.seed}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    if case.pruner is not None:
        name, *settings = case.pruner.split(",")
        command.append(f"hydra/sweeper/pruner={name}")
        command += [f"hydra.sweeper.pruner.{setting}" for setting in settings]
    return command


def run_kerastuner(case: Case, directory: Path) -> dict[str, Any]:
    """KerasTuner's search in a process of its own, timed from its start to its exit."""
    directory.mkdir(parents=True)
    out = directory / "figures.json"
    command = [sys.executable, "-m", "hpo.bench.kerastuner_search", str(out), f"--trials={case.trials}"]
    command += [f"--epochs={case.epochs}", f"--seed={case.seed}"]
    started, code, cpu_s = _timed(command, directory, directory / "kerastuner.log")
    wall = time.time() - started
    if code != 0 or not out.exists():
        _fail("KerasTuner's search", code, directory / "kerastuner.log")
    return {"wall_s": round(wall, 3), "cpu_s": cpu_s, **json.loads(out.read_text())}


def _timed(command: list[str], cwd: Path, log_path: Path) -> tuple[float, int | None, float]:
    """Run ``command``; returns when it started (epoch seconds), its exit code (None: timed out) and the CPU
    seconds it and the processes it waited for used (less sensitive than wall time to a busy machine)."""
    before = _children_cpu_s()
    with open(log_path, "w") as log:
        started = time.time()
        try:
            done = subprocess.run(
                command, cwd=cwd, env=environment(), stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return started, None, 0.0
    return started, done.returncode, round(_children_cpu_s() - before, 3)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _fail(what: str, code: int | None, log_path: Path) -> None:
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    ended = "timed out" if code is None else f"exited with code {code}"
    raise BackendError(f"{what} {ended}; its log is {log_path}:\n{tail}")


def read_events(sweep_dir: Path) -> list[dict[str, Any]]:
    """The sweep's event log (``hpo.driver.live.EventLog``)."""
    from hpo.driver.live import EVENTS_FILE

    path = sweep_dir / EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_trial(tracking_uri: str) -> tuple[float | None, float | None]:
    """When the sweep's first trial run opened, and when it logged its first epoch (epoch seconds)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    query, order = "tags.`mlflow.parentRunId` IS NOT NULL", ["attributes.start_time ASC"]
    runs = client.search_runs(ids, query, order_by=order)
    if not runs:
        return None, None
    first = runs[0]
    epochs = [m.timestamp for m in client.get_metric_history(first.info.run_id, "val_accuracy")]
    return first.info.start_time / 1000, (min(epochs) / 1000 if epochs else None)


def reports_complete(tracking_uri: str) -> bool:
    """Whether the sweep's parent run ended FINISHED with its final results and reports logged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(ids, "tags.`mlflow.parentRunId` IS NULL")
    if parent.info.status != "FINISHED":
        return False
    logged = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "reports")}
    return set(FINAL_REPORTS) <= logged


def breakdown(
    started: float,
    ended: float,
    events: list[dict[str, Any]],
    first_run: float | None = None,
    first_epoch: float | None = None,
) -> dict[str, Any]:
    """The sweep command's wall time and where it went, from its start and end (epoch seconds), its event
    log and its first trial's run; the best objective of the trials told COMPLETE."""
    submits = [e["t"] for e in events if e["event"] == "submit"]
    finishes = [e for e in events if e["event"] == "finish"]
    study = next((e["t"] for e in events if e["event"] == "study"), None)
    first_submit = min(submits, default=None)
    last_result = max((e["t"] for e in finishes), default=None)
    values = [e["value"] for e in finishes if e.get("state") == "COMPLETE" and e.get("value") is not None]

    def since_start(t: float | None) -> float | None:
        return None if t is None else round(t - started, 3)

    improvements: list[list[float]] = []
    for event in sorted(finishes, key=lambda e: e["t"]):
        value = event.get("value")
        if event.get("state") != "COMPLETE" or value is None:
            continue
        if not improvements or value > improvements[-1][1]:
            improvements.append([round(event["t"] - started, 3), float(value)])

    return {
        "wall_s": round(ended - started, 3),
        "best": max(values, default=None),
        "completed": len(values),
        "pruned": sum(e.get("state") == "PRUNED" for e in finishes),
        # [seconds from the start, best so far] at each improvement: when a sweep reached a given value
        "improvements": improvements,
        "finished": len(finishes),
        "to_study_s": since_start(study),
        "to_first_submit_s": since_start(first_submit),
        "to_first_trial_s": since_start(first_run),
        "to_first_epoch_s": since_start(first_epoch),
        "trials_s": None
        if first_submit is None or last_result is None
        else round(last_result - first_submit, 3),
        "after_last_s": None if last_result is None else round(ended - last_result, 3),
    }


def to_reference_best(hpo: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """When a sweep first came within ``REACHED`` of the reference sweep's best (the same shape and seed,
    unpruned): seconds from its start, and that as a share of the reference's wall; None if it never did."""
    target = None if reference["best"] is None else reference["best"] - REACHED
    seconds = next((t for t, best in hpo["improvements"] if target is not None and best >= target), None)
    share = None if seconds is None else round(seconds / reference["wall_s"], 3)
    return {"reference_best": reference["best"], "seconds": seconds, "of_reference_wall": share}


def _shape(case: Case) -> dict[str, Any]:
    return {
        "trials": case.trials,
        "epochs": case.epochs,
        "workers": case.workers,
        "seed": case.seed,
        "pruner": case.pruner,
    }


def _ratio(hpo: dict[str, Any], tuner: dict[str, Any]) -> float | None:
    return round(hpo["wall_s"] / tuner["wall_s"], 3) if tuner["wall_s"] > 0 else None


def describe(result: dict[str, Any]) -> list[str]:
    """A few lines of figures for a human."""
    hpo, tuner = result["hpo"], result["kerastuner"]

    def seconds(key: str) -> str:
        value = hpo.get(key)
        return "-" if value is None else f"{value:.1f} s"

    def best(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    shape = f"{result['trials']} trials x {result['epochs']} epochs, {result['workers']} workers"
    pruner = f", pruner {result['pruner']}" if result.get("pruner") else ""
    against = (
        ""
        if tuner is None
        else f", KerasTuner {tuner['wall_s']:.1f} s (best {best(tuner['best'])}): "
        f"hpo/KerasTuner {result['wall_ratio']:.2f}x"
    )
    lines = [
        f"{shape}, seed {result['seed']}{pruner}: hpo {hpo['wall_s']:.1f} s (best val_accuracy "
        f"{best(hpo['best'])}, {hpo.get('pruned', 0)} pruned){against}",
        f"  hpo: study at {seconds('to_study_s')}, first submit at {seconds('to_first_submit_s')}, "
        f"first trial's run at {seconds('to_first_trial_s')}, its first epoch at "
        f"{seconds('to_first_epoch_s')}; trials {seconds('trials_s')}; last result to exit "
        f"{seconds('after_last_s')}; reports {'complete' if hpo['reports_complete'] else 'INCOMPLETE'} "
        f"at exit; {hpo['cpu_s']:.1f} CPU-s; best reached at "
        f"{hpo['improvements'][-1][0] if hpo['improvements'] else '-'} s",
    ]
    reached = result.get("to_unpruned_best")
    if reached is not None:
        lines.append(
            f"  within {REACHED} of the unpruned sweep's best ({best(reached['reference_best'])}): "
            + (
                "never"
                if reached["seconds"] is None
                else f"at {reached['seconds']:.1f} s, {reached['of_reference_wall']:.2f}x the unpruned wall"
            )
        )
    if tuner is not None:
        lines.append(
            f"  KerasTuner: set-up {tuner['setup_s']:.1f} s, search {tuner['search_s']:.1f} s; "
            f"{tuner['cpu_s']:.1f} CPU-s"
        )
    return lines
