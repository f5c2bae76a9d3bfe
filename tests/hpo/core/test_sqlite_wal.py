"""SQLite stores in WAL mode: set on connecting, kept with the file, and never in the way of connecting."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from hpo.core import sqlite_wal as sqlite_stores
from hpo.core.optuna_storage import open_storage

FULL, NORMAL = 2, 1


@contextmanager
def _registered(wanted: bool) -> Iterator[None]:
    """The process-wide listener registered (or not) for one test, and left as it was after it."""
    was = event.contains(Engine, "connect", sqlite_stores._write_ahead)
    if was:
        event.remove(Engine, "connect", sqlite_stores._write_ahead)
    if wanted:
        sqlite_stores.commit_through_write_ahead_log()
        sqlite_stores.commit_through_write_ahead_log()
    yield
    if wanted:
        event.remove(Engine, "connect", sqlite_stores._write_ahead)
        assert not event.contains(Engine, "connect", sqlite_stores._write_ahead), "registered once"
    if was:
        event.listen(Engine, "connect", sqlite_stores._write_ahead)


@pytest.fixture
def write_ahead() -> Iterator[None]:
    with _registered(True):
        yield


@pytest.fixture
def plain() -> Iterator[None]:
    with _registered(False):
        yield


def _journal(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


def test_a_study_database_commits_through_its_log(write_ahead: None, tmp_path: Path) -> None:
    open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert _journal(tmp_path / "optuna.db") == "wal", "the mode stays with the file, for other processes"
    with create_engine(f"sqlite:///{tmp_path / 'optuna.db'}").connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == NORMAL, "no sync per commit"


def test_without_it_the_default_journal_stays(plain: None, tmp_path: Path) -> None:
    with create_engine(f"sqlite:///{tmp_path / 'plain.db'}").connect() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.commit()
    assert _journal(tmp_path / "plain.db") == "delete"


def test_a_database_without_the_log_keeps_its_full_syncs(write_ahead: None) -> None:
    with create_engine("sqlite://").connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "memory"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == FULL


def test_a_database_locked_elsewhere_is_still_opened_as_it_is(write_ahead: None, tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    try:
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "delete"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == FULL
    finally:
        holder.execute("ROLLBACK")
        holder.close()
