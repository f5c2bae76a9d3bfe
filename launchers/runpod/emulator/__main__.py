"""``python -m launchers.runpod.emulator``: a local RunPod serverless endpoint backed by real workers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from launchers.runpod.emulator import catalog
from launchers.runpod.emulator.faults import FaultInjector, Faults
from launchers.runpod.emulator.server import build_app
from launchers.runpod.emulator.supervisor import Config, StartupError, Supervisor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m launchers.runpod.emulator",
        description="A local emulator of RunPod's serverless control plane (API key from $RUNPOD_API_KEY).",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="workers.max: most workers at once (default 1)"
    )
    parser.add_argument(
        "--workers-min", type=int, help="workers.min: workers kept warm (default: as many as --workers)"
    )
    parser.add_argument(
        "--idle-timeout-s", type=int, default=5, help="an idle worker stops after this long (default 5)"
    )
    parser.add_argument(
        "--cold-start-s", type=float, default=0.0, help="a new worker's billed boot time before it starts"
    )
    parser.add_argument(
        "--flashboot-cold-start-s", type=float, help="cold start of a slot that ran before (default: / 5)"
    )
    parser.add_argument(
        "--gpu-count", type=int, default=1, help="GPUs per worker (default 1; 0: CPU workers)"
    )
    parser.add_argument("--gpu-pool", default="ADA_24", help="the endpoint's GPU pool (default ADA_24)")
    parser.add_argument("--endpoint-name", default="hpo-emulator", help="the endpoint's name")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument(
        "--endpoint-id", default="local", help="the endpoint id served under /v2 (default local)"
    )
    parser.add_argument(
        "--worker-command", help='command that starts one worker (default: "<this python> -m worker")'
    )
    parser.add_argument("--log-dir", type=Path, help="where workers' output goes (default: a new temp dir)")
    parser.add_argument(
        "--execution-timeout-s", type=float, default=600.0, help="a job's run time limit without a policy"
    )
    parser.add_argument(
        "--startup-timeout-s", type=float, default=180.0, help="how long workers may take to poll"
    )
    parser.add_argument(
        "--rate-limit-window-s", type=float, default=10.0, help="RunPod's rate-limit window (default 10)"
    )
    parser.add_argument(
        "--rate-limit-scale", type=float, default=1.0, help="factor on RunPod's per-window limits"
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--fault-error-rate", type=float, default=0.0, help="fraction of API requests refused"
    )
    faults.add_argument("--fault-seed", type=int, default=None, help="seed for --fault-error-rate's draws")
    faults.add_argument(
        "--fault-status-delay-s", type=float, default=0.0, help="delay before /status answers"
    )
    faults.add_argument(
        "--fault-kill-worker-jobs", type=int, default=0, help="first K jobs lose their worker"
    )
    faults.add_argument(
        "--fault-kill-after-s", type=float, default=0.5, help="... this long after being taken"
    )
    faults.add_argument("--fault-timeout-jobs", type=int, default=0, help="first K jobs taken time out")
    faults.add_argument(
        "--fault-timeout-after-s", type=float, default=0.5, help="... this long after being taken"
    )
    faults.add_argument(
        "--fault-running-state", action="store_true", help="/status shows jobs in progress as RUNNING"
    )
    faults.add_argument(
        "--fault-brownout-s", type=float, default=0.0, help="API answers 503 or hang, from start, this long"
    )
    faults.add_argument("--fault-hang-s", type=float, default=12.0, help="how long a hung answer hangs")
    faults.add_argument(
        "--fault-lost-answers", type=int, default=0, help="next K /run create their job, answer lost"
    )
    faults.add_argument(
        "--fault-throttled-workers", type=int, default=0, help="next K workers wanted stay THROTTLED"
    )
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be at least 0")
    if args.workers_min is not None and not 0 <= args.workers_min <= args.workers:
        parser.error("--workers-min must be between 0 and --workers")
    if args.gpu_pool not in catalog.POOLS:
        parser.error(f"--gpu-pool must be one of {', '.join(sorted(catalog.POOLS))}")
    if not 0 <= args.gpu_count <= catalog.MAX_GPUS_PER_WORKER:
        parser.error(f"--gpu-count must be between 0 (CPU workers) and {catalog.MAX_GPUS_PER_WORKER}")
    return args


def config_from(args: argparse.Namespace, api_key: str, log_dir: Path) -> Config:
    faults = Faults(
        error_rate=args.fault_error_rate,
        seed=args.fault_seed,
        status_delay_s=args.fault_status_delay_s,
        kill_worker_jobs=args.fault_kill_worker_jobs,
        kill_after_s=args.fault_kill_after_s,
        timeout_jobs=args.fault_timeout_jobs,
        timeout_after_s=args.fault_timeout_after_s,
        running_state=args.fault_running_state,
        brownout_s=args.fault_brownout_s,
        hang_s=args.fault_hang_s,
        lost_answers=args.fault_lost_answers,
        throttled_workers=args.fault_throttled_workers,
    )
    command = shlex.split(args.worker_command) if args.worker_command else [sys.executable, "-m", "worker"]
    return Config(
        api_key=api_key,
        workers=args.workers,
        workers_min=args.workers_min,
        idle_timeout_s=args.idle_timeout_s,
        cold_start_s=args.cold_start_s,
        flashboot_cold_start_s=args.flashboot_cold_start_s,
        gpu_count=args.gpu_count,
        gpu_pool=args.gpu_pool,
        endpoint_id=args.endpoint_id,
        endpoint_name=args.endpoint_name,
        rate_limit_window_s=args.rate_limit_window_s,
        rate_limit_scale=args.rate_limit_scale,
        worker_command=command,
        log_dir=log_dir,
        execution_timeout_s=args.execution_timeout_s,
        faults=faults,
    )


async def serve(config: Config, port: int, startup_timeout_s: float) -> int:
    """Serve until SIGINT or SIGTERM, then stop every worker; the exit status."""
    supervisor = Supervisor(config)
    runner = web.AppRunner(build_app(supervisor), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        host, bound_port = runner.addresses[0][:2]
        base_url = f"http://{host}:{bound_port}"
        print(f"logs: {config.log_dir}", flush=True)
        await supervisor.start(base_url)
        ready = asyncio.create_task(supervisor.wait_ready(startup_timeout_s))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            return 0
        ready.result()
        print(f"ready: {base_url}/v2", flush=True)
        await stopping
        return 0
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        await supervisor.close()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    api_key = os.environ.get("RUNPOD_API_KEY", "")
    if not api_key:
        print("error: set RUNPOD_API_KEY to the API key the emulator should accept", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="runpod-emulator-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    config = config_from(args, api_key, log_dir.resolve())
    try:
        FaultInjector(config.faults)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s emulator %(message)s", stream=sys.stderr)
    return asyncio.run(serve(config, args.port, args.startup_timeout_s))


if __name__ == "__main__":
    sys.exit(main())
