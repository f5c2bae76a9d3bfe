"""The dispatch benchmark's workload: trials that WAIT a calibrated time instead of training.

This is a benchmark workload only, never a way to train: each trial sleeps for a duration drawn from a
lognormal distribution (median ``HPO_BENCH_MEDIAN_S``, default 2 s; sigma ``HPO_BENCH_SIGMA``, default
0.6) seeded by (study seed, trial number), then returns a deterministic objective of its learning rate.
Waiting is the point here: the benchmark measures how well the sweeper and launcher keep workers busy,
so the task must take a known, reproducible time and cost no CPU. Every run appends one event (start,
end, process) under ``HPO_BENCH_EVENTS`` so that the benchmark can sum the time spent in tasks.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

MEDIAN_ENV = "HPO_BENCH_MEDIAN_S"
SIGMA_ENV = "HPO_BENCH_SIGMA"
EVENTS_ENV = "HPO_BENCH_EVENTS"
DEFAULT_MEDIAN_S = 2.0
DEFAULT_SIGMA = 0.6


def duration_s(
    seed: int, number: int, median_s: float = DEFAULT_MEDIAN_S, sigma: float = DEFAULT_SIGMA
) -> float:
    """Trial ``number``'s duration: lognormal around ``median_s``, always the same for (seed, number)."""
    import numpy as np

    return float(np.random.default_rng([seed, number]).lognormal(math.log(median_s), sigma))


def objective(learning_rate: float) -> float:
    """A smooth objective with its maximum (1.0) at a learning rate of about 3e-3."""
    return 1.0 - (math.log10(learning_rate) + 2.5) ** 2 / 10.0


def run_workload(seed: int, number: int, learning_rate: float, stop: threading.Event | None = None) -> float:
    """Wait trial ``number``'s drawn duration (less if ``stop`` is set), record the event, and return the
    objective."""
    median_s = float(os.environ.get(MEDIAN_ENV, DEFAULT_MEDIAN_S))
    sigma = float(os.environ.get(SIGMA_ENV, DEFAULT_SIGMA))
    wait_s = duration_s(seed, number, median_s, sigma)
    start = time.time()
    (stop or threading.Event()).wait(wait_s)
    end = time.time()
    events = os.environ.get(EVENTS_ENV)
    if events:
        event = {"number": number, "start": start, "end": end, "planned_s": wait_s, "pid": os.getpid()}
        # one line per write, well under PIPE_BUF: concurrent appends from many processes stay whole
        with open(Path(events), "a") as out:
            out.write(json.dumps(event) + "\n")
    return objective(learning_rate)


def task(cfg: Any) -> float:
    """The Hydra task function of a benchmark sweep on the local backend."""
    from hydra.core.hydra_config import HydraConfig

    return run_workload(int(cfg.seed), int(HydraConfig.get().job.num), float(cfg.trainer.learning_rate))


def handle(job: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    """The RunPod serverless handler of a benchmark sweep: the same wait, for an hpo trial payload, cut
    short when RunPod stops the job (``stop``).

    Like hpo's worker it ships the trial's run back for the driver to replay, here only the objective.
    """
    from hpo.core.payload import parse_payload

    payload = parse_payload(job.get("input"))
    value = run_workload(
        payload.trial.seed, payload.trial.number, float(payload.config["trainer"]["learning_rate"]), stop
    )
    return {"objective": value, "worker_id": os.environ.get("RUNPOD_POD_ID", ""), "run": _run(payload, value)}


def _run(payload: Any, value: float) -> dict[str, Any]:
    """A run bundle (``hpo.core.run_bundle``) holding nothing but the objective, as hpo's worker logs it."""
    buffer = io.BytesIO()
    tarfile.open(fileobj=buffer, mode="w:gz").close()
    point = [[0, int(time.time() * 1000), value]]
    return {
        "params": {},
        "tags": {},
        "metrics": {"objective": point, str(payload.config["mode"]["objective"]): point},
        "datasets": [],
        "models": [],
        "artifacts": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }
