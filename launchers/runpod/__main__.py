"""``python -m launchers.runpod deploy|status [overrides...]``: create, update or check hpo's RunPod endpoint.

Overrides are hpo's own (``hardware=runpod_2gpu launcher.workers=4 launcher.runpod.deploy.image=...``),
so the endpoint matches the sweep run with the same ones. Exit codes: 0 done or healthy, 1 status found a
problem (or an unexpected error), 2 bad input or an API that refused; ``HPO_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from hpo.core.errors import HPOError
from hpo.core.failures import report_failure
from hpo.core.names import DEBUG_ENV
from launchers.runpod import deploy
from launchers.runpod.rest import RestClient

USER_ERRORS = (HPOError, HydraException, OmegaConfBaseException)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m launchers.runpod",
        description="Deploy hpo's worker as a RunPod serverless endpoint (deploy), or check one (status). "
        "RUNPOD_API_KEY is read from the environment; status reads RUNPOD_ENDPOINT_ID.",
    )
    parser.add_argument("command", choices=("deploy", "status"))
    parser.add_argument("overrides", nargs="*", help="hpo's Hydra overrides, as for a sweep")
    return parser.parse_args(argv)


def run(command: str, overrides: list[str]) -> int:
    """Run one command; the exit code (status: 1 when it printed a problem)."""
    cfg = deploy.load_config(overrides)
    deploy.require_runpod(cfg)
    if command == "deploy":
        deploy.template_body(cfg)  # refuses a missing image before the API key is asked for
    rest = RestClient(deploy.api_key(), cfg.launcher.runpod.rest_api_base)
    if command == "deploy":
        applied = deploy.deploy(cfg, rest)
        print("\n".join(item.line() for item in applied))
        print("To run a sweep on it:")
        print("\n".join(deploy.usage_lines(cfg, applied[-1].id, overrides)))
        return 0
    report = deploy.status(cfg, rest, deploy.configured_endpoint(cfg))
    print("\n".join(report.lines))
    for problem in report.problems:
        print(f"problem: {problem}")
    return 1 if report.problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args.command, list(args.overrides))
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        return report_failure(exc, isinstance(exc, USER_ERRORS))


if __name__ == "__main__":
    sys.exit(main())
