"""``python -m hpo``: the Hydra app, with every known error turned into one line and exit code 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

import hydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from hpo.core.errors import HPOError
from hpo.core.failures import report_failure
from hpo.core.names import DEBUG_ENV
from hpo.core.process import own_process
from hpo.core.schema import register_configs
from hpo.driver.early_start import start_for_sweep
from worker.task import run

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
USER_ERRORS = (HPOError, HydraException, OmegaConfBaseException)


class _DropHydraJobNotice:
    """Drops Hydra's "Error executing job with overrides" notice: hpo reports each failure itself."""

    NOTICE = "Error executing job with overrides:"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return 0 if text.startswith(self.NOTICE) else self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main() -> int:
    """Run hpo's Hydra app; returns the process exit code."""
    start_for_sweep(sys.argv[1:])
    debug = bool(os.environ.get(DEBUG_ENV))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register_configs()
    # SIGTERM takes the same path as Ctrl-C: running trials are cancelled and recorded, nothing is orphaned.
    own_process()
    app = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(run)
    stderr, sys.stderr = sys.stderr, _DropHydraJobNotice(sys.stderr)  # type: ignore[assignment]
    try:
        app()
    except BrokenPipeError:
        # The reader went away (``python -m hpo --help | head``): say nothing more, like other CLIs.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: running trials were cancelled, finished ones are kept", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        return report_failure(exc, isinstance(exc, USER_ERRORS))
    finally:
        sys.stderr = stderr
    return 0
