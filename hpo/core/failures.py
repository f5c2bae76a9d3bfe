"""How hpo's commands report a failure: one clear line on stderr and an exit code, with the traceback only
under ``HPO_DEBUG=1``."""

from __future__ import annotations

import sys

from hydra.errors import OverrideParseException

from hpo.core.errors import HPOError
from hpo.core.names import DEBUG_ENV

# lines of OmegaConf's and Hydra's messages that say nothing a user can act on
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


def explained(error: BaseException) -> BaseException:
    """The first of ``error`` and its causes that hpo raised on purpose: Hydra wraps an error raised while
    it builds a plugin (a sweeper's check of its settings) in "Error in call to target ...: <repr>"."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, HPOError):
            return seen
        seen = seen.__cause__
    return error


def one_line(error: BaseException) -> str:
    """Fold an exception and its causes into one line, dropping OmegaConf's key dumps."""
    error = explained(error)
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


def report_failure(error: BaseException, user_error: bool) -> int:
    """Print ``error`` as one line and return the exit code: 2 for a user's error (bad input, an endpoint
    that cannot be reached), 1 for anything unexpected."""
    message = one_line(error)
    if user_error:
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(
        f"error: unexpected {type(error).__name__}: {message} (set {DEBUG_ENV}=1 for the traceback)",
        file=sys.stderr,
    )
    return 1
