"""What a RunPod job costs: its time on the worker, less any wait there behind the worker's trial before."""

from __future__ import annotations

import pytest

from hpo.payload import WORKER_WAIT_KEY
from launchers.runpod.job import billed_ms


@pytest.mark.parametrize(
    ("status", "billed"),
    [
        ({"executionTime": 5000}, 5000),
        ({"executionTime": 5000, "output": {"objective": 0.5, WORKER_WAIT_KEY: 2.0}}, 3000),
        ({"executionTime": 1500, "output": {WORKER_WAIT_KEY: 2.0}}, 0),
        ({"executionTime": 5000, "output": "not a dict"}, 5000),
        ({}, 0),
    ],
)
def test_a_held_job_is_billed_only_for_its_own_trial(status: dict[str, object], billed: float) -> None:
    assert billed_ms(status) == pytest.approx(billed)
