"""A real RunPod serverless worker for the emulator's tests: its input says what the handler does.

Input keys, applied in this order: ``progress`` (N progress updates), ``wait_for`` (wait until that file
exists), ``sleep_s`` (sleep that long), ``exit`` (end the process with that code), ``fail_unless`` (raise
unless that file exists),
``raise`` (raise with that message), ``error`` (return it as the job's error), ``numbers`` (sum them),
``output_bytes`` (return that many bytes of output), ``env`` (return those environment variables),
``refresh`` (ask RunPod for a fresh worker after), ``on_stop`` (a file the handler writes when RunPod
stops the job: the SDK cancels the handler's task, which the waits honour as they are asyncio sleeps).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import cpuinfo

# runpod's debugger module probes the CPU in a subprocess at import (a second or more); the toy worker
# skips that so that tests which replace workers stay fast. Nothing of the protocol depends on it.
cpuinfo.get_cpu_info = lambda: {"brand_raw": "toy worker"}

import runpod  # noqa: E402


async def handler(job: dict[str, Any]) -> Any:
    spec = job["input"]
    try:
        return await _run(job, spec)
    except asyncio.CancelledError:
        if "on_stop" in spec:
            Path(spec["on_stop"]).write_text(job["id"])
        raise


async def _run(job: dict[str, Any], spec: dict[str, Any]) -> Any:
    steps = int(spec.get("progress", 0))
    for step in range(1, steps + 1):
        runpod.serverless.progress_update(job, f"step {step}/{steps}")
    if "wait_for" in spec:
        while not Path(spec["wait_for"]).exists():
            await asyncio.sleep(0.02)
    if "sleep_s" in spec:
        await asyncio.sleep(float(spec["sleep_s"]))
    if "exit" in spec:
        os._exit(int(spec["exit"]))
    if "fail_unless" in spec and not Path(spec["fail_unless"]).exists():
        raise FileNotFoundError(f"{spec['fail_unless']} is missing")
    if "raise" in spec:
        raise ValueError(spec["raise"])
    if "error" in spec:
        return {"error": spec["error"]}
    result: dict[str, Any] = {"worker_id": os.environ["RUNPOD_POD_ID"], "pid": os.getpid()}
    if "numbers" in spec:
        result["sum"] = sum(spec["numbers"])
    if "output_bytes" in spec:
        result["blob"] = "x" * int(spec["output_bytes"])
    if "env" in spec:
        result["env"] = {name: os.environ.get(name) for name in spec["env"]}
    if spec.get("refresh"):
        result["refresh_worker"] = True
    return result


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
