"""A small built-in GPU catalog in the shape of RunPod's ``GET /v2/catalog/gpus``.

The prices are the emulator's own plausible list prices (USD per GPU-hour, serverless from RunPod's
published per-second flex rates of 2025), not RunPod's live prices: billing tests compare against these.
"""

from __future__ import annotations

from typing import Any

# (gpu type id, pool id, memory GB, secure pod $/h, community pod $/h, serverless $/s)
_GPUS: tuple[tuple[str, str, int, float, float, float], ...] = (
    ("NVIDIA RTX A5000", "AMPERE_24", 24, 0.27, 0.16, 0.00019),
    ("NVIDIA GeForce RTX 4090", "ADA_24", 24, 0.69, 0.34, 0.00031),
    ("NVIDIA RTX A6000", "AMPERE_48", 48, 0.49, 0.33, 0.00034),
    ("NVIDIA L40S", "ADA_48_PRO", 48, 0.86, 0.79, 0.00053),
    ("NVIDIA A100 80GB PCIe", "AMPERE_80", 80, 1.64, 1.19, 0.00076),
    ("NVIDIA H100 80GB HBM3", "ADA_80_PRO", 80, 2.69, 1.99, 0.00116),
    ("NVIDIA H200", "HOPPER_141", 141, 3.59, 3.59, 0.00155),
)
MAX_GPUS_PER_WORKER = 8


def gpus() -> list[dict[str, Any]]:
    """Every GPU type as the catalog route lists it."""
    return [
        {
            "id": gpu_id,
            "name": gpu_id.removeprefix("NVIDIA ").removeprefix("GeForce "),
            "pool": pool,
            "memory": memory,
            "manufacturer": "NVIDIA",
            "secure": True,
            "community": True,
            "price": {"secure": secure, "community": community, "serverless": round(per_s * 3600, 4)},
            "maxCount": {
                "secure": MAX_GPUS_PER_WORKER,
                "community": MAX_GPUS_PER_WORKER,
                "serverless": MAX_GPUS_PER_WORKER,
            },
        }  # fmt: skip
        for gpu_id, pool, memory, secure, community, per_s in _GPUS
    ]


POOLS = frozenset(pool for _, pool, *_ in _GPUS)


def serverless_price(pool: str) -> float:
    """USD per hour for one GPU of ``pool`` on a serverless worker."""
    return next(round(per_s * 3600, 4) for _, p, *_, per_s in _GPUS if p == pool)


def gpu_type(pool: str) -> str:
    """The GPU type id a worker in ``pool`` reports."""
    return next(gpu_id for gpu_id, p, *_ in _GPUS if p == pool)
