"""Per-worker billing: every worker-second from placement (cold start included) until its stop."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from launchers.runpod.emulator import catalog
from launchers.runpod.emulator.workers import Worker


def bill(workers: Iterable[Worker], now: float, origin: float) -> dict[str, Any]:
    """The bill so far: per worker and in total; ``origin`` is the emulator's start (monotonic)."""
    rows: list[dict[str, Any]] = []
    for worker in sorted((w for w in workers if w.placed is not None), key=lambda w: w.placed or 0.0):
        placed = worker.placed or 0.0
        seconds = (worker.stopped or now) - placed
        usd_per_hour = catalog.serverless_price(worker.pool) * worker.gpu_count
        rows.append(
            {
                "id": worker.id,
                "pool": worker.pool,
                "gpu_count": worker.gpu_count,
                "started_s": round(placed - origin, 3),
                "stopped_s": None if worker.stopped is None else round(worker.stopped - origin, 3),
                "cold_start_s": worker.cold_start_s,
                "seconds": round(seconds, 3),
                "usd": round(seconds * usd_per_hour / 3600, 6),
            }
        )
    return {
        "worker_seconds": round(sum(float(row["seconds"]) for row in rows), 3),
        "usd": round(sum(float(row["usd"]) for row in rows), 6),
        "workers": rows,
    }
