"""What the driver process keeps out of its imports, to stay light."""

from __future__ import annotations

import sys

# pandas (which MLflow imports) loads pyarrow whenever it is installed, though the driver reads and writes
# no Arrow data: tens of MB of the driver's resident memory. Trials run in processes of their own and keep it.
UNUSED_IN_THE_DRIVER = ("pyarrow",)


def leave_out_unused_libraries() -> None:
    """Mark the libraries the driver never uses as absent, so optional imports of them fail fast.

    Call it first thing in a driver process; a library something already imported stays as it is.
    """
    for name in UNUSED_IN_THE_DRIVER:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
