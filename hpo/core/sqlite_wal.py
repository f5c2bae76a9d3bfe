"""SQLite stores written through a write-ahead log, so that a commit does not wait for the disk.

With SQLite's default rollback journal every commit syncs the disk, and the driver commits several times
per trial (Optuna's trial, params, attributes and state;
MLflow's run, its params, metrics and end). In WAL mode with ``synchronous=NORMAL`` a commit is an append
to the log: a killed process (even by SIGKILL) still loses no commit it made, and an OS crash or power cut
can lose the last commits but never leaves the database corrupt. WAL needs a local file system (SQLite's
own rule); the mode stays with the database file, so the other processes that open it use the log too.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


def commit_through_write_ahead_log() -> None:
    """Put every SQLite database this process connects to through SQLAlchemy in WAL mode from now on."""
    if not event.contains(Engine, "connect", _write_ahead):
        event.listen(Engine, "connect", _write_ahead)


def _write_ahead(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        # SQLite answers with the mode it is left in; it raises only where the database is busy
        (mode,) = cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        # NORMAL is safe from corruption only with the log: a rollback journal keeps its full syncs
        if str(mode).lower() == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
        else:
            log.debug(f"SQLite journal left as {mode}: commits sync the disk as before")
    except sqlite3.OperationalError as exc:
        # another process holds the database in its rollback journal: commits stay as they were
        log.debug(f"SQLite journal left as it is: {exc}")
    finally:
        cursor.close()
