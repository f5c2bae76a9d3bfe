"""What a sweep's RunPod workers cost, from scripted workers lists: every second from placement to stop is
billed (cold start and idle time included) at the profile's price or RunPod's catalog price."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from launchers.runpod.client import Backoff
from launchers.runpod.cost import CostMeter, PriceList
from launchers.runpod.rest import RestClient

T0 = 1_800_000_000.0
CATALOG = [
    {"id": "NVIDIA GeForce RTX 4090", "pool": "ADA_24", "price": {"serverless": 1.0}},
    {"id": "NVIDIA L4", "pool": "ADA_24", "price": {"serverless": 0.5}},
    {"id": "NVIDIA A100 80GB PCIe", "pool": "AMPERE_80", "price": {"serverless": 3.0}},
]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def worker(
    worker_id: str, status: str, started: float | None, gpu: str = "NVIDIA GeForce RTX 4090"
) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z") if started else None
    return {"id": worker_id, "status": status, "gpuTypeId": gpu, "startedAt": stamp}


def meter(prices: PriceList, clock: Clock, idle_timeout_s: float = 5.0) -> CostMeter:
    # the REST client is never asked: these tests hand the meter its workers lists
    rest = RestClient("key", "http://127.0.0.1:9/rest", Backoff(attempts=1))
    return CostMeter(rest, "ep", prices, idle_timeout_s, 1.0, clock)


def test_a_worker_is_billed_from_placement_with_its_cold_start_and_idle_tail() -> None:
    clock = Clock()
    costs = meter(PriceList(None, CATALOG, ["ADA_24"], 2), clock)
    clock.now = T0 + 10
    costs.observe([worker("w1", "INITIALIZING", T0 + 4)], {"initializing": 1})
    clock.now = T0 + 20
    costs.observe([worker("w1", "RUNNING", T0 + 4)], {"running": 1})
    assert costs.price_for("w1") == 2.0  # the 4090's catalog price times 2 GPUs
    clock.now = T0 + 100
    costs.observe([worker("w1", "RUNNING", T0 + 4)], {"running": 1})
    costs.job_ended("w1", 60 / 3600 * 2.0)  # a 60 s job, seen final at T0+100
    assert costs.spent_usd() == pytest.approx(96 / 3600 * 2.0)
    clock.now = T0 + 102
    costs.finish()  # the last read fails (nothing answers): the worker is still up, idle since T0+100
    report = costs.report()
    assert report["worker_seconds"] == pytest.approx(96 + 5)
    assert report["cost_usd"] == pytest.approx(101 / 3600 * 2.0)
    assert report["cost_execution_usd"] == pytest.approx(60 / 3600 * 2.0)
    assert report["cost_cold_start_usd"] == pytest.approx(16 / 3600 * 2.0)
    assert report["cost_idle_usd"] == pytest.approx(25 / 3600 * 2.0)
    assert report["price_per_hour"] == pytest.approx(2.0)


def test_a_stopped_worker_bills_nothing_more_and_throttled_ones_nothing() -> None:
    clock = Clock()
    costs = meter(PriceList(None, CATALOG, ["ADA_24"], 1), clock)
    clock.now = T0 + 30
    costs.observe([worker("w1", "IDLE", T0), worker("w2", "THROTTLED", None)], {"idle": 1, "throttled": 1})
    clock.now = T0 + 60
    costs.observe([worker("w2", "THROTTLED", None)], {"throttled": 1})
    assert costs.no_live_since == T0 + 60
    assert costs.workers_text() == "1 throttled"
    assert costs.report()["worker_seconds"] == pytest.approx(30)
    assert costs.spent_usd() == pytest.approx(30 / 3600)


def test_the_profiles_price_overrides_the_catalog_and_an_unknown_gpu_takes_the_first_pools() -> None:
    assert PriceList(0.25, CATALOG, ["ADA_24"], 4).per_hour("NVIDIA GeForce RTX 4090") == 0.25
    # a pool's GPUs may differ in price: its dearest is counted
    assert PriceList(None, CATALOG, ["ADA_24", "AMPERE_80"], 2).per_hour(None) == 2.0
    assert PriceList(None, CATALOG, ["AMPERE_80"], 1).per_hour("NVIDIA A100 80GB PCIe") == 3.0


def test_no_price_known_is_said_once_and_counted_as_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "launchers.runpod.cost")
    prices = PriceList(None, CATALOG, ["HOPPER_141"], 1)
    assert prices.per_hour("NVIDIA H200") == 0.0 and prices.per_hour(None) == 0.0
    assert len(caplog.records) == 1
    caplog.clear()
    assert PriceList(None, None, ["ADA_24"], 1).per_hour("NVIDIA GeForce RTX 4090") == 0.0
    assert len(caplog.records) == 1 and "catalog could not be read" in caplog.records[0].message
