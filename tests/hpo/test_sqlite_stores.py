"""SQLite stores in WAL mode: set on connecting, kept with the file, and never in the way of connecting."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from hpo import sqlite_stores
from hpo.study_storage import DriverStorage


@pytest.fixture
def write_ahead() -> Iterator[None]:
    sqlite_stores.commit_through_write_ahead_log()
    sqlite_stores.commit_through_write_ahead_log()
    yield
    event.remove(Engine, "connect", sqlite_stores._write_ahead)
    assert not event.contains(Engine, "connect", sqlite_stores._write_ahead), "registered once"


def _journal(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


def test_a_study_database_commits_through_its_log(write_ahead: None, tmp_path: Path) -> None:
    DriverStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert _journal(tmp_path / "optuna.db") == "wal", "the mode stays with the file, for other processes"
    with create_engine(f"sqlite:///{tmp_path / 'optuna.db'}").connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1, "NORMAL: no sync per commit"


def test_without_it_the_default_journal_stays(tmp_path: Path) -> None:
    with create_engine(f"sqlite:///{tmp_path / 'plain.db'}").connect() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.commit()
    assert _journal(tmp_path / "plain.db") == "delete"


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
    finally:
        holder.execute("ROLLBACK")
        holder.close()
