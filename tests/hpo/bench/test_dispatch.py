"""``python -m hpo.bench dispatch``: real sweeps of the waiting workload, and figures a script can read."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from hpo.bench.dispatch import Case, figures
from hpo.bench.workload import duration_s

KEYS = {"backend", "mode", "workers", "trials", "wall_s", "efficiency", "overhead_ms", "driver_rss_mb"}


def bench(*args: str) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "hpo.bench", "dispatch", "--workers", "2", "--trials", "4"]
    out = subprocess.run(
        [*cmd, "--median-s", "0.2", "--json", *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def assert_sane(result: dict[str, Any]) -> None:
    assert result.keys() >= KEYS
    assert (result["workers"], result["trials"], result["completed"]) == (2, 4, 4)
    assert 0 < result["efficiency"] <= 1.05
    assert result["wall_s"] >= result["longest_task_s"] > 0
    parts = result["setup_s"] + result["wall_s"] + result["closing_s"]
    assert result["sweep_s"] == pytest.approx(parts, abs=0.01)
    assert result["overhead_ms"] > 0 and result["driver_rss_mb"] > 0
    assert result["handoff_ms"] is not None and result["handoff_ms"] >= 0
    assert not result["driver_imported_tensorflow"], "the driver never imports TensorFlow"


@pytest.mark.slow
def test_local_backend_async_and_batch_sweeps_print_one_json_line_each() -> None:
    results = bench("--backend", "local", "--mode", "both")
    assert [(r["backend"], r["mode"]) for r in results] == [("local", "async"), ("local", "batch")]
    for result in results:
        assert_sane(result)


@pytest.mark.slow
def test_runpod_backend_against_the_emulator() -> None:
    pytest.importorskip("launchers.runpod.emulator")
    (result,) = bench("--backend", "runpod", "--mode", "async")
    assert (result["backend"], result["mode"]) == ("runpod", "async")
    assert_sane(result)


def test_task_times_are_lognormal_around_the_median_and_reproducible() -> None:
    draws = np.array([duration_s(7, n) for n in range(4000)])
    assert np.median(draws) == pytest.approx(2.0, rel=0.05)
    assert np.std(np.log(draws)) == pytest.approx(0.6, rel=0.05)
    assert duration_s(7, 3) == duration_s(7, 3) != duration_s(8, 3)
    assert duration_s(7, 3, median_s=0.2) == pytest.approx(duration_s(7, 3) / 10)


def test_figures_from_probe_and_events() -> None:
    """Two workers busy during the 9 s the trials took, of a 10 s sweep; the driver spent 0.2 CPU s while
    tasks ran."""
    probe = {
        "start": 100.0,
        "end": 110.0,
        "cpu_s": 1.5,
        "samples": [[100.0, 1.0], [101.0, 1.5], [110.0, 1.7], [110.0, 2.5]],
        "peak_rss_mb": 200.0,
        "tensorflow_imported": False,
    }
    events = [
        {"number": 0, "start": 101.0, "end": 105.0},
        {"number": 1, "start": 101.0, "end": 106.0},
        {"number": 2, "start": 105.0, "end": 110.0},
        {"number": 3, "start": 106.0, "end": 110.0},
    ]
    result = figures(Case("local", "async", 2, 4, 0, 2.0), probe, events)
    assert result["wall_s"] == 9.0 and result["tasks_s"] == 18.0 and result["longest_task_s"] == 5.0
    assert result["efficiency"] == pytest.approx(1.0)
    assert result["sweep_s"] == 10.0 and result["sweep_efficiency"] == pytest.approx(0.9)
    assert result["setup_s"] == 1.0 and result["closing_s"] == 0.0
    assert result["overhead_ms"] == pytest.approx(50.0)
    assert result["completed"] == 4 and result["driver_rss_mb"] == 200.0


def _idle_probe(end: float) -> dict[str, object]:
    """A driver probe of a sweep from 0 to ``end`` seconds that spent 1 CPU second."""
    return {
        "start": 0.0,
        "end": end,
        "cpu_s": 1.0,
        "samples": [[0.0, 0.0], [end, 1.0]],
        "peak_rss_mb": 1.0,
        "tensorflow_imported": False,
    }


def test_the_ceiling_is_free_dispatch_of_the_same_tasks_in_trial_order() -> None:
    probe = _idle_probe(20.0)
    # trials 0..2 take 4, 4 and 8 s: on two free workers, #2 starts at 4 s and the last ends at 12 s
    events = [
        {"number": 2, "start": 5.0, "end": 13.0},
        {"number": 0, "start": 0.5, "end": 4.5},
        {"number": 1, "start": 0.5, "end": 4.5},
    ]
    result = figures(Case("local", "async", 2, 3, 0, 2.0), probe, events)
    assert result["ceiling"] == pytest.approx(16 / 24, abs=1e-4), (
        "the wait for the last task is no sweeper's fault"
    )
    assert result["efficiency"] == pytest.approx(16 / 25, abs=1e-4)


def test_handoff_is_the_mean_wait_between_tasks_of_one_worker() -> None:
    probe = _idle_probe(10.0)
    events = [
        {"number": 0, "start": 1.0, "end": 3.0, "pid": 7},
        {"number": 1, "start": 1.0, "end": 2.0, "pid": 8},
        {"number": 2, "start": 3.1, "end": 5.0, "pid": 7},
        {"number": 3, "start": 2.3, "end": 6.0, "pid": 8},
        {"number": 4, "start": 5.2, "end": 6.0, "pid": 7},
    ]
    result = figures(Case("runpod", "async", 2, 5, 0, 2.0), probe, events)
    assert result["handoff_ms"] == pytest.approx((100 + 300 + 200) / 3, abs=0.1)
    assert figures(Case("local", "async", 2, 1, 0, 2.0), probe, events[:1])["handoff_ms"] is None


def test_handoff_with_a_process_per_task_is_the_wait_for_the_slot_freed_first() -> None:
    probe = _idle_probe(10.0)
    # slurm: every task in a process of its own, so no worker process runs two
    events = [
        {"number": 0, "start": 1.0, "end": 3.0, "pid": 1},
        {"number": 1, "start": 1.0, "end": 2.0, "pid": 2},
        {"number": 2, "start": 2.5, "end": 5.0, "pid": 3},
        {"number": 3, "start": 3.7, "end": 6.0, "pid": 4},
    ]
    result = figures(Case("slurm", "async", 2, 4, 0, 2.0), probe, events)
    # task 2 takes the slot freed at 2.0 (500 ms), task 3 the one freed at 3.0 (700 ms)
    assert result["handoff_ms"] == pytest.approx((500 + 700) / 2, abs=0.1)
