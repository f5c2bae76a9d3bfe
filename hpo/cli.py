"""``python -m hpo``: the Hydra app, with every known error turned into one line and exit code 2."""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

import hydra
from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from hpo import interrupts
from hpo.app import run
from hpo.errors import HPOError
from hpo.schema import register_configs

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
DEBUG_ENV = "HPO_DEBUG"
USER_ERRORS = (HPOError, HydraException, OmegaConfBaseException)
_NOISE = (
    "full_key:",
    "object_type=",
    "reference_type=",
    "To append to your",
    "Set the environment variable",
    "Config search path:",
    "provider=",
)


def _fold(text: str) -> str:
    """One line from a multi-line message; lines after one ending in ':' become a comma-separated list."""
    out, listing = "", False
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith(_NOISE):
            continue
        out = f"{out}{', ' if listing and not out.endswith(':') else ' '}{line}" if out else line
        listing = listing or line.endswith(":")
    return out


class _DropHydraJobNotice:
    """Drops Hydra's "Error executing job with overrides" notice: hpo reports each failure itself."""

    NOTICE = "Error executing job with overrides:"

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return 0 if text.startswith(self.NOTICE) else self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def one_line(error: BaseException) -> str:
    """Fold an exception and its causes into one line, dropping OmegaConf's key dumps."""
    parts: list[str] = []
    if isinstance(error, OverrideParseException):
        parts.append(f"bad override '{error.override}':")
    seen: BaseException | None = error
    while seen is not None:
        text = _fold(str(seen))
        if text and text not in " ".join(parts):
            parts.append(text)
        seen = seen.__cause__
    return " ".join(parts) or type(error).__name__


def main() -> int:
    """Run hpo's Hydra app; returns the process exit code."""
    debug = bool(os.environ.get(DEBUG_ENV))
    # hydra-optuna-sweeper still builds Optuna's pre-3.0 distributions; their deprecation notes are noise.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register_configs()
    # SIGTERM takes the same path as Ctrl-C: running trials are cancelled and recorded, nothing is orphaned.
    interrupts.stop_on(signal.SIGTERM)
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
        message = one_line(exc)
        if isinstance(exc, USER_ERRORS):
            print(f"error: {message}", file=sys.stderr)
            return 2
        print(
            f"error: unexpected {type(exc).__name__}: {message} (set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        sys.stderr = stderr
    return 0
