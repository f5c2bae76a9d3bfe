"""RunPod's per-route rate limits: a sliding window of admitted requests per route."""

from __future__ import annotations

import math
import time
from collections import deque

# RunPod's documented limits per 10 s window (docs.runpod.io/serverless/endpoints/operation-reference,
# "Rate limits"); its REST API allows 100 requests per 10 s per route.
ROUTE_LIMITS = {"run": 1000, "runsync": 2000, "status": 2000, "cancel": 100, "purge-queue": 2, "health": 100}
REST_LIMIT = 100
WINDOW_S = 10.0


class RateLimiter:
    """Admits requests per route up to ``limit x scale`` per ``window_s``; else says when to retry."""

    def __init__(self, window_s: float = WINDOW_S, scale: float = 1.0) -> None:
        self.window_s = window_s
        self.scale = scale
        self._admitted: dict[str, deque[float]] = {}

    def retry_after(self, route: str, rest: bool) -> int | None:
        """None to admit a request to ``route`` (counting it), else the whole seconds until one may go."""
        base = REST_LIMIT if rest else ROUTE_LIMITS.get(route)
        if base is None:
            return None
        limit = max(1, round(base * self.scale))
        now = time.monotonic()
        window = self._admitted.setdefault(route, deque())
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) < limit:
            window.append(now)
            return None
        return max(1, math.ceil(window[0] + self.window_s - now))
