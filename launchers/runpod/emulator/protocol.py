"""RunPod's serverless wire contract as the emulator serves it: job states, limits, policies and webhook URLs.

The numbers come from RunPod's public documentation (read 2025):

- https://docs.runpod.io/serverless/endpoints/operation-reference : ``/run`` takes at most 10 MB and keeps
  results 30 minutes; ``/runsync`` takes at most 20 MB, keeps results 1 minute and waits 90 s by default
  (``?wait=`` 1000-300000 ms); the JSON shapes of ``/status``, ``/cancel``, ``/retry``, ``/purge-queue``
  and ``/health``.
- https://docs.runpod.io/serverless/endpoints/send-requests#execution-policies : ``policy.executionTimeout``
  in ms (default 600000, must be > 5000) and ``policy.ttl`` in ms (default 86400000, >= 10000, at most a
  week).
- https://docs.runpod.io/serverless/workers/handler-functions#payload-limits : the same 10 MB (``/run``)
  and 20 MB (``/runsync``) limits bound what a handler returns ("if your results exceed these limits,
  consider stashing them in cloud storage"); the SDK itself warns over 20 MB
  (``runpod/serverless/modules/rp_tips.py``, which counts 1 MB as 1,000,000 bytes, as the emulator does).

The worker side follows runpod-python 1.12 (``serverless/modules/rp_job.py``, ``rp_http.py``, ``rp_ping.py``):
the SDK substitutes ``$ID`` (worker id) in ``RUNPOD_WEBHOOK_GET_JOB`` and ``$RUNPOD_POD_ID`` (worker id)
then ``$ID`` (job id) in the output and stream URLs, and appends ``&job_in_progress=`` / ``&isStream=``,
so every template carries a query string already.
"""

from __future__ import annotations

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
STATES = (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT)
FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})

MB = 1_000_000
PAYLOAD_LIMITS = {"run": 10 * MB, "runsync": 20 * MB}
RESULT_RETENTION_S = {"run": 30 * 60.0, "runsync": 60.0}
RUNSYNC_WAIT_MS = (1_000, 90_000, 300_000)  # min, default, max

DEFAULT_EXECUTION_TIMEOUT_MS = 600_000
MIN_EXECUTION_TIMEOUT_MS = 5_000  # exclusive
DEFAULT_TTL_MS = 86_400_000
TTL_RANGE_MS = (10_000, 7 * 86_400_000)

# How long the emulator holds a worker's job-take or job-stop long-poll open before answering 204.
POLL_HOLD_S = 20.0
GPU_QUERY = "?gpu=emulator"


def limit_mb(source: str) -> int:
    """The payload limit of a job's submitting route in whole MB, for messages."""
    return PAYLOAD_LIMITS[source] // MB


def worker_env(base_url: str, endpoint_id: str, worker_id: str, api_key: str) -> dict[str, str]:
    """The environment RunPod gives a serverless worker, pointing its webhooks at this emulator."""
    root = f"{base_url}/v2/{endpoint_id}"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID{GPU_QUERY}",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID{GPU_QUERY}",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID{GPU_QUERY}",
        "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID{GPU_QUERY}",
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_POD_HOSTNAME": f"{worker_id}-emulator",
        "RUNPOD_AI_API_KEY": api_key,
        "RUNPOD_ENDPOINT_ID": endpoint_id,
        "RUNPOD_PING_INTERVAL": "1000",  # ms: pings list the jobs a worker holds, which releases stops
        "PYTHONUNBUFFERED": "1",
    }


# The SDK's start-up fitness checks probe 8.8.8.8, free memory and the GPU; a laptop or CI box fails or
# crawls through them, so workers skip them unless the caller's environment says otherwise.
WORKER_ENV_DEFAULTS = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}
